"""The one check at the door, per request: who is calling, and may they call this route.

401 for no key or one nobody configured, 403 ``permission_denied`` for a key without any of
the scopes the route declares - naming the scope, never another key. Both carry the
``WWW-Authenticate`` challenge of RFC 6750 (``error="insufficient_scope"`` and the scope for a 403). Decided before the
request's body is read, so a refused request costs nothing and loads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference_service.router.tenancy.keys import ANONYMOUS, UNAUTHENTICATED, KeyRing, Tenant
from inference_service.router.tenancy.scopes import RouteScopes


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    type: str
    code: str
    challenge: bytes  # the WWW-Authenticate header


_NO_KEY = Refusal(
    401,
    "Missing or invalid API key: send 'Authorization: Bearer <key>'",
    "authentication_error",
    "invalid_api_key",
    b"Bearer",
)


class Gate:
    def __init__(self, keyring: KeyRing, routes: RouteScopes) -> None:
        self.keyring = keyring
        self.routes = routes

    def admit(self, method: str, path: str, authorization: bytes) -> Tenant | Refusal:
        """The tenant the request acts for, or why it is refused."""
        if self.keyring.open:
            return ANONYMOUS
        access = self.routes.lookup(method, path)
        tenant = self.keyring.authenticate(authorization) if authorization else None
        if not access:  # a public route: a valid key still counts (the health check's detail)
            return tenant or UNAUTHENTICATED
        if tenant is None:
            return _NO_KEY
        if tenant.scopes.isdisjoint(access):
            needed = " or ".join(repr(scope) for scope in sorted(access))
            return Refusal(
                403,
                f"the key {tenant.name!r} lacks the {needed} scope that {method} {path} needs",
                "permission_error",
                "permission_denied",
                f'Bearer error="insufficient_scope", scope="{" ".join(sorted(access))}"'.encode(),
            )
        return tenant
