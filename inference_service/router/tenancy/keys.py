"""Who is calling: the key a request presents, resolved to a :class:`Tenant` once per request.

A key is looked up by the SHA-256 of what the client sent, so the secret itself is never
compared (nor kept: ``sha256`` in the config keeps only the digest). The lookup's timing can
tell at most how the digest of a guess compares with a stored digest - which says nothing
about any secret, since nobody can choose what a guess hashes to - and the entry found is
confirmed with ``hmac.compare_digest``. One hash and one lookup, however many keys. The tenant travels with the request in a context
variable, so everything the request does - orchestration stages included, and tasks it
spawns - acts for that key.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from dataclasses import dataclass, field

from inference_service.config import Settings
from inference_service.config.keys import LEGACY_KEY_NAME, SCOPES, KeyConfig, Scope, key_models
from inference_service.router.serving.errors import APIError


@dataclass(frozen=True, slots=True)
class Tenant:
    """One key, as a request sees it: computed at config load, never per request."""

    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None  # the model ids it may use; None: every model
    weight: float = 1.0
    max_priority: int = 3
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    limited: bool = field(init=False)  # any limit set: asked on every request, so computed once

    def __post_init__(self) -> None:
        limits = (self.max_concurrent, self.requests_per_minute, self.tokens_per_minute)
        object.__setattr__(self, "limited", any(limit is not None for limit in limits))

    def may_use(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models

    @property
    def records_of(self) -> str | None:
        """Whose requests this key may see (activity, live ``request`` events): its own - or, with the
        ``admin`` scope, every key's (None)."""
        return None if "admin" in self.scopes else self.name

    def describe(self) -> dict[str, object]:
        """What a key may know about itself (``GET /v1/key``): never its secret, never other keys."""
        return {
            "name": self.name,
            "scopes": sorted(self.scopes),
            "models": sorted(self.models) if self.models is not None else None,
            "max_concurrent": self.max_concurrent,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "weight": self.weight,
            "max_priority": self.max_priority,
        }


#: The caller when no key is configured: the service is open, as before keys existed.
ANONYMOUS = Tenant("anonymous", frozenset(SCOPES))
#: The caller of a public route (the health checks) without a valid key: no scope at all.
UNAUTHENTICATED = Tenant("unauthenticated", frozenset())

_current: contextvars.ContextVar[Tenant] = contextvars.ContextVar("tenant", default=ANONYMOUS)


def current() -> Tenant:
    """The key the current request acts for (ANONYMOUS outside a request)."""
    return _current.get()


def act_as(tenant: Tenant) -> contextvars.Token[Tenant]:
    return _current.set(tenant)


def release(token: contextvars.Token[Tenant]) -> None:
    _current.reset(token)


def check_model(model_id: str, tenant: Tenant | None = None) -> None:
    """403 ``permission_denied`` when the key (``tenant``, else the current one) may not use ``model_id`` -
    before anything loads."""
    tenant = tenant or _current.get()
    if not tenant.may_use(model_id):
        raise APIError(
            403,
            f"the key {tenant.name!r} may not use the model {model_id!r}",
            type="permission_error",
            param="model",
            code="permission_denied",
        )


def check_scope(scope: Scope, action: str, param: str | None = None) -> None:
    """403 ``permission_denied`` when the current key lacks ``scope`` for ``action`` - for what a route
    decides by the request's body, past the gate (which checks the route's own scopes)."""
    tenant = _current.get()
    if scope not in tenant.scopes:
        raise APIError(
            403,
            f"the key {tenant.name!r} lacks the {scope!r} scope that {action} needs",
            type="permission_error",
            param=param,
            code="permission_denied",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )


def _tenant(key: KeyConfig, names: dict[str, str]) -> Tenant:
    return Tenant(
        name=key.name,
        scopes=frozenset(key.scopes),
        models=key_models(key.models, names) if key.models is not None else None,
        weight=key.weight,
        max_priority=key.max_priority,
        max_concurrent=key.max_concurrent,
        requests_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
    )


class KeyRing:
    """The configured keys by digest. ``configure`` swaps them in whole (a config reload): a key
    removed is refused from the next request on; one in flight finishes as the tenant it began as."""

    def __init__(self, settings: Settings) -> None:
        self._by_digest: dict[bytes, tuple[bytes, Tenant]] = {}
        self.tenants: dict[str, Tenant] = {}
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        names = {name: model.id for model in settings.models.values() for name in (model.id, *model.aliases)}
        by_digest = {key.digest: (key.digest, _tenant(key, names)) for key in settings.keys.values()}
        if settings.api_key is not None:
            legacy = hashlib.sha256(settings.api_key.get_secret_value().encode()).digest()
            by_digest[legacy] = (legacy, Tenant(LEGACY_KEY_NAME, frozenset(SCOPES)))
        self._by_digest = by_digest
        self.tenants = {tenant.name: tenant for _, tenant in by_digest.values()}

    @property
    def open(self) -> bool:
        """No key configured: every request is ANONYMOUS, with every scope."""
        return not self._by_digest

    def authenticate(self, authorization: bytes) -> Tenant | None:
        """The tenant of ``Authorization: Bearer <key>`` (the scheme in any case), or None."""
        scheme, _, supplied = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        digest = hashlib.sha256(supplied.strip()).digest()
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(digest, entry[0]):
            return None
        return entry[1]
