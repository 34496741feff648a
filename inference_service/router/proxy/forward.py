"""Forward one client request to one model: the shared path of every proxied endpoint.

Admission, on-demand loading, metrics, the error envelope and SSE re-streaming are the
same whichever API the client speaks; only a stream's framing differs (``[DONE]`` for
OpenAI chat and completions, a terminal named event for Anthropic and Responses streams).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request, Response

from inference_service.router.observability import activity, tracing
from inference_service.router.proxy.dispatch import served_model_headers
from inference_service.router.proxy.schemas import without_router_fields
from inference_service.router.proxy.sse import OPENAI, StreamProtocol, asking_usage, wants_usage
from inference_service.router.proxy.stream import EventStream, ProxiedStream
from inference_service.router.services import Services
from inference_service.router.serving.disconnect import unless_disconnected
from inference_service.router.serving.errors import upstream_error_of
from inference_service.router.serving.middleware import request_id_var
from inference_service.runtimes.base import OPENAI_PATHS


async def forward(
    request: Request,
    svc: Services,
    model_id: str,
    path: str,
    raw: dict[str, Any],
    stream: bool,
    priority: int,
    protocol: StreamProtocol = OPENAI,
    endpoint: str | None = None,
) -> Response:
    """Proxy one request: bytes through, errors as envelopes; ``protocol``: how its stream ends.

    ``endpoint`` is the request's label in metrics and the access log, by default ``path``'s
    (an API translated to another path, Ollama's ``/api/chat``, keeps its own name).

    A client that hangs up is noticed at once, queued or running: ClientDisconnected, which
    the app's exception handlers answer; a stream is admitted and relayed by the response
    itself (see stream.py). Either way the request is counted once, by ``record_request``.
    """
    endpoint = endpoint or path.removeprefix("/v1/").lstrip("/")
    started = time.perf_counter()
    body = without_router_fields(raw)
    request_id = request_id_var.get()
    activity.note(model=model_id, endpoint=endpoint)
    tracing.note_request(raw)
    if stream:
        # A chat stream is counted like any call: its usage is asked for, and hidden from a client that did not ask.
        hide_usage = path == "/v1/chat/completions" and protocol is OPENAI and not wants_usage(body)
        upstream_body = asking_usage(body) if hide_usage else body
        source = ProxiedStream(
            svc.dispatcher, model_id, path, upstream_body, priority, request_id, protocol, hide_usage
        )
        return EventStream.for_model(svc, model_id, endpoint, started, source)
    try:
        reply = await unless_disconnected(
            request.receive, svc.dispatcher.post(model_id, path, body, priority, request_id)
        )
        if reply.status != 200:
            error = upstream_error_of(reply.status, reply.body)
            if reply.status == 404 and path not in OPENAI_PATHS:  # likely a server without this endpoint: say so
                error.message = f"the runtime of model {model_id!r} answered 404 for {path}: {error.message}"
            raise error
    except BaseException as error:
        svc.metrics.record_request(model_id, endpoint, started, error)
        raise
    svc.metrics.record_request(model_id, endpoint, started)
    return Response(reply.body, status_code=200, media_type="application/json", headers=served_model_headers())
