"""The scope every route of the router needs - the matrix the tenancy tests hold the app to.

A route added to the app without a declared scope stops the app from starting; one declared
but missing here fails tests/unit/router/tenancy/test_scopes.py, which also holds this table to
the README's matrix (Tenants) - so a new route's access is always a decision someone wrote down,
in the docs too, and the integration matrix (tests/integration/router/tenancy/test_keys.py) then
checks it over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PUBLIC: frozenset[str] = frozenset()
ANY_KEY = frozenset({"inference", "read", "admin"})
INFERENCE = frozenset({"inference"})
READ = frozenset({"read"})
ADMIN = frozenset({"admin"})
LISTING = frozenset({"inference", "read"})  # clients of the inference API list the models they may use

#: (path, methods, scopes) in the app's match order; an empty set: no key needed.
ROUTE_SCOPES: list[tuple[str, frozenset[str], frozenset[str]]] = [
    ("/openapi.json", frozenset({"GET", "HEAD"}), ANY_KEY),
    ("/docs", frozenset({"GET", "HEAD"}), ANY_KEY),
    ("/docs/oauth2-redirect", frozenset({"GET", "HEAD"}), ANY_KEY),
    ("/v1/chat/completions", frozenset({"POST"}), INFERENCE),
    ("/v1/completions", frozenset({"POST"}), INFERENCE),
    ("/v1/embeddings", frozenset({"POST"}), INFERENCE),
    ("/v1/responses", frozenset({"POST"}), INFERENCE),
    ("/v1/messages", frozenset({"POST"}), INFERENCE),
    ("/v1/messages/count_tokens", frozenset({"POST"}), INFERENCE),
    ("/v1/rerank", frozenset({"POST"}), INFERENCE),
    ("/tokenize", frozenset({"POST"}), INFERENCE),
    ("/detokenize", frozenset({"POST"}), INFERENCE),
    ("/infill", frozenset({"POST"}), INFERENCE),
    ("/apply-template", frozenset({"POST"}), INFERENCE),
    ("/api/chat", frozenset({"POST"}), INFERENCE),
    ("/api/generate", frozenset({"POST"}), INFERENCE),
    ("/api/embed", frozenset({"POST"}), INFERENCE),
    ("/api/embeddings", frozenset({"POST"}), INFERENCE),
    ("/api/tags", frozenset({"GET"}), LISTING),
    ("/api/ps", frozenset({"GET"}), LISTING),
    ("/api/show", frozenset({"POST"}), LISTING),
    ("/api/version", frozenset({"GET"}), ANY_KEY),
    ("/", frozenset({"GET"}), ANY_KEY),
    ("/", frozenset({"HEAD"}), ANY_KEY),
    ("/api/pull", frozenset({"POST"}), ANY_KEY),  # model management: refused (403) whoever asks
    ("/api/push", frozenset({"POST"}), ANY_KEY),
    ("/api/create", frozenset({"POST"}), ANY_KEY),
    ("/api/copy", frozenset({"POST"}), ANY_KEY),
    ("/api/delete", frozenset({"DELETE"}), ANY_KEY),
    ("/api/blobs/{digest}", frozenset({"HEAD"}), ANY_KEY),
    ("/api/blobs/{digest}", frozenset({"POST"}), ANY_KEY),
    ("/api/{rest:path}", frozenset({"DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"}), ANY_KEY),  # Ollama's 404
    ("/health", frozenset({"GET"}), PUBLIC),
    ("/health", frozenset({"HEAD"}), PUBLIC),
    ("/health/ready", frozenset({"GET"}), PUBLIC),
    ("/health/ready", frozenset({"HEAD"}), PUBLIC),
    ("/metrics", frozenset({"GET"}), READ),
    ("/v1/events", frozenset({"GET"}), READ),
    ("/v1/models/{name:path}/logs", frozenset({"GET"}), ADMIN),
    ("/v1/logs", frozenset({"GET"}), ADMIN),
    ("/v1/key", frozenset({"GET"}), ANY_KEY),
    ("/v1/usage", frozenset({"GET"}), ANY_KEY),  # admin: any key's; any other key: its own
    ("/v1/activity", frozenset({"GET"}), READ | ADMIN),  # admin: every key's records; read: its own
    ("/v1/activity/{record_id}/capture", frozenset({"GET"}), ADMIN),  # captured bodies are sensitive
    ("/v1/models", frozenset({"GET"}), LISTING),
    ("/v1/models/{name:path}/load", frozenset({"POST"}), ADMIN),
    ("/v1/models/{name:path}/unload", frozenset({"POST"}), ADMIN),
    ("/v1/models/{name:path}", frozenset({"GET"}), LISTING),
    ("/upstream/{name}/{path:path}", frozenset({"GET", "POST"}), ADMIN),
    ("/admin/reload", frozenset({"POST"}), ADMIN),
    ("/v1/requests", frozenset({"GET"}), ADMIN),  # every key's requests in flight
    ("/v1/requests/{request_id}/cancel", frozenset({"POST"}), ADMIN),
    ("/ui", frozenset({"GET"}), PUBLIC),
    ("/ui/{name}", frozenset({"GET"}), PUBLIC),
]


@dataclass(frozen=True)
class Call:
    """One concrete request to a route, against a router whose model ``model`` answers anything."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    stream: bool = False  # a feed that never ends by itself: read the head only


def calls(model: str) -> list[tuple[Call, frozenset[str]]]:
    """A request per route and method in :data:`ROUTE_SCOPES`, with the scopes it needs."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "input": "hi",
        "name": model,
    }
    concrete = {
        "/v1/models/{name:path}/logs": f"/v1/models/{model}/logs",
        "/v1/models/{name:path}/load": f"/v1/models/{model}/load",
        "/v1/models/{name:path}/unload": f"/v1/models/{model}/unload",
        "/v1/models/{name:path}": f"/v1/models/{model}",
        "/upstream/{name}/{path:path}": f"/upstream/{model}/props",
        "/v1/requests/{request_id}/cancel": "/v1/requests/no-such-request/cancel",
        "/ui/{name}": "/ui/console.js",
        "/v1/activity/{record_id}/capture": "/v1/activity/1/capture",
        "/api/blobs/{digest}": "/api/blobs/sha256:0",
        "/api/{rest:path}": "/api/no-such-endpoint",
    }
    result = []
    for path, methods, scopes in ROUTE_SCOPES:
        for method in sorted(methods):
            target = concrete.get(path, path)
            sends_body = method == "POST" and not target.startswith(("/v1/models/", "/admin/"))
            result.append((Call(method, target, body if sends_body else None, stream=path == "/v1/events"), scopes))
    return result
