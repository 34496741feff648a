"""The tenancy state of one app: its keys and their limits, configured together from the settings."""

from __future__ import annotations

from inference_service.config import Settings
from inference_service.router.tenancy.keys import KeyRing
from inference_service.router.tenancy.limits import Limits


class Tenancy:
    def __init__(self, settings: Settings) -> None:
        self.keys = KeyRing(settings)
        self.limits = Limits(self.keys.tenants)

    def configure(self, settings: Settings) -> None:
        """A config reload: a removed key is refused from the next request on; a key's limits change,
        what it used does not."""
        self.keys.configure(settings)
        self.limits.configure(self.keys.tenants)
