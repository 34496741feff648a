"""The one check at the door, per request: who is calling, may they call this route, and is
their key within its limits.

401 for no key or one nobody configured, 403 ``permission_denied`` for a key without any of
the scopes the route declares - naming the scope, never another key - and 429
``rate_limit_exceeded`` with ``Retry-After`` for a metered request over its key's limits. The
first two carry the ``WWW-Authenticate`` challenge of RFC 6750 (``error="insufficient_scope"``
and the scope for a 403). Decided before the request's body is read, so a refused request
costs nothing and loads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference_service.router.tenancy.keys import ANONYMOUS, UNAUTHENTICATED, Tenant
from inference_service.router.tenancy.limits import Exceeded, Ticket
from inference_service.router.tenancy.registry import Tenancy
from inference_service.router.tenancy.scopes import RouteScopes

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    type: str
    code: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class Pass:
    """An admitted request: the key it acts for, and its limits' ticket when it is metered."""

    tenant: Tenant
    ticket: Ticket | None = None


_OPEN = Pass(ANONYMOUS)
_NO_KEY = Refusal(
    401,
    "Missing or invalid API key: send 'Authorization: Bearer <key>'",
    "authentication_error",
    "invalid_api_key",
    [(b"www-authenticate", b"Bearer")],
)


class Gate:
    def __init__(self, tenancy: Tenancy, routes: RouteScopes) -> None:
        self.tenancy = tenancy
        self.routes = routes

    def admit(self, method: str, path: str, authorization: bytes, body_bytes: int) -> Pass | Refusal:
        """The request's pass, or why it is refused; ``body_bytes``: its declared length (for the estimate)."""
        keyring = self.tenancy.keys
        if keyring.open:
            return _OPEN
        rule = self.routes.lookup(method, path)
        access = rule.access
        tenant = keyring.authenticate(authorization) if authorization else None
        if not access:  # a public route: a valid key still counts (the health check's detail)
            return Pass(tenant or UNAUTHENTICATED)
        if tenant is None:
            return _NO_KEY
        if tenant.scopes.isdisjoint(access):
            needed = " or ".join(repr(scope) for scope in sorted(access))
            challenge = f'Bearer error="insufficient_scope", scope="{" ".join(sorted(access))}"'
            return Refusal(
                403,
                f"the key {tenant.name!r} lacks the {needed} scope that {method} {path} needs",
                "permission_error",
                "permission_denied",
                [(b"www-authenticate", challenge.encode())],
            )
        if not rule.metered or not tenant.limited:
            return Pass(tenant)
        limits = self.tenancy.limits
        admission = limits.admit(tenant, body_bytes)
        if isinstance(admission, Exceeded):
            retry = [(b"retry-after", str(admission.retry_after_s).encode())]
            return Refusal(
                429, admission.message, "rate_limit_error", "rate_limit_exceeded", retry + limits.headers(tenant)
            )
        return Pass(tenant, admission)
