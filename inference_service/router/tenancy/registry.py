"""The tenancy state of one app: its keys and their limits, configured together from the settings,
and the ledger of what each key used."""

from __future__ import annotations

from inference_service.config import Settings
from inference_service.router.tenancy.keys import KeyRing
from inference_service.router.tenancy.ledger import UsageLedger
from inference_service.router.tenancy.limits import Limits


class Tenancy:
    def __init__(self, settings: Settings, ledger: UsageLedger) -> None:
        self.keys = KeyRing(settings)
        self.limits = Limits(self.keys.tenants)
        self.ledger = ledger

    def configure(self, settings: Settings) -> None:
        """A config reload: a removed key is refused from the next request on; a key's limits change,
        what it used does not."""
        self.keys.configure(settings)
        self.limits.configure(self.keys.tenants)
