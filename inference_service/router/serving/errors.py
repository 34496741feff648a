"""The router's errors, answered in the envelope of the API that was called.

OpenAI's ``{"error": {"message", "type", "param", "code"}}`` everywhere but on two APIs with
shapes of their own: Anthropic's Messages (``/v1/messages*``: the same envelope plus the
top-level ``"type": "error"`` Anthropic's SDK reads) and Ollama's (``/api/*``: ``{"error":
"<message>"}``). Clients pick their exception class from the status code and show the
message; every error the router produces goes through :class:`APIError`, and every answer
of one - a route's, an exception handler's, the key check's, the body cap's, the
shutdown's, a cancel's - through :meth:`APIError.response_for`, so none answers a client
in another API's shape.
"""

from __future__ import annotations

import enum
import json
import re
from types import TracebackType
from typing import Any

from inference_service.router.serving.escaped_json import EscapedJSONResponse
from inference_service.supervisor import InsufficientCapacity, ModelUnavailable, UnknownModel


class ApiFamily(enum.Enum):
    """The API whose error envelope a request is answered in."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"


def api_family(path: str) -> ApiFamily:
    """The API a request path belongs to: a few prefix checks, made only when an error is answered."""
    if path.startswith("/api/"):
        return ApiFamily.OLLAMA
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return ApiFamily.ANTHROPIC
    return ApiFamily.OPENAI


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.type, self.param, self.code)

    def response(self, body: dict[str, Any] | None = None) -> EscapedJSONResponse:
        """The error's answer; ``body`` replaces the envelope (an API with a shape of its own).

        Escaped: its message may quote any client-supplied name (see escaped_json.py).
        """
        return EscapedJSONResponse(self.body() if body is None else body, status_code=self.status, headers=self.headers)

    def anthropic_body(self) -> dict[str, Any]:
        """The envelope with Anthropic's top-level ``"type": "error"``, so both SDKs read it."""
        return {"type": "error", **self.body()}

    def ollama_body(self) -> dict[str, Any]:
        """Ollama's error shape: ``{"error": "<message>"}`` (its client shows the string)."""
        return {"error": self.message}

    def response_for(self, path: str) -> EscapedJSONResponse:
        """The error's answer in the envelope of the API ``path`` belongs to (:func:`api_family`).

        Ollama answers a request it cannot read with 400, never with the 422 of the router's
        own validation (FastAPI's convention): an Ollama client sees Ollama's status.
        """
        family = api_family(path)
        if family is ApiFamily.OPENAI:
            return self.response()
        if family is ApiFamily.ANTHROPIC:
            return self.response(self.anthropic_body())
        status = 400 if self.status == 422 else self.status
        return EscapedJSONResponse(self.ollama_body(), status_code=status, headers=self.headers)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(message: str, code: str = "model_not_found", param: str | None = "model") -> APIError:
    return APIError(404, message, type="not_found_error", param=param, code=code)


def service_unavailable(message: str, type: str = "service_unavailable", retry_after_s: int | None = None) -> APIError:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return APIError(503, message, type=type, code=type, headers=headers)


#: The status of a request cancelled by ``POST /v1/requests/{id}/cancel``. 499 is not IANA's: it is
#: nginx's "client closed request", and the HTTP status Google's APIs give the gRPC code
#: ``CANCELLED`` - the nearest convention for "someone called this off". A 4xx, because the
#: request is not the server's failure, and one that SDKs do not retry (the OpenAI SDK retries
#: 408, 409, 429 and 5xx): re-sending what an operator cancelled would undo the cancel.
REQUEST_CANCELLED_STATUS = 499


def request_cancelled() -> APIError:
    """The answer of a request cancelled before its response began (a stream begun gets an error event)."""
    return APIError(
        REQUEST_CANCELLED_STATUS,
        "the request was cancelled (POST /v1/requests/{id}/cancel) before it was answered",
        type="request_cancelled",
        code="request_cancelled",
    )


#: Seconds a client is told to wait (``Retry-After``) before asking a model that was unavailable again.
MODEL_UNAVAILABLE_RETRY_S = 5


class _SupervisorErrorMap:
    """What :func:`map_supervisor_errors` returns: stateless, so one instance serves every request."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, error_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            return
        if isinstance(error, UnknownModel):  # gone between resolving its name and reaching it (a config reload)
            raise not_found(str(error)) from None
        if isinstance(error, InsufficientCapacity):
            raise APIError(507, str(error), type="insufficient_capacity", code="insufficient_capacity") from None
        if isinstance(error, ModelUnavailable):
            raise service_unavailable(
                str(error), "model_unavailable", retry_after_s=MODEL_UNAVAILABLE_RETRY_S
            ) from None


_SUPERVISOR_ERROR_MAP = _SupervisorErrorMap()


def map_supervisor_errors() -> _SupervisorErrorMap:
    """``with map_supervisor_errors():`` - the supervisor's refusals inside become the router's API errors.

    The one translation, as httpx's ``map_httpcore_exceptions()`` is for httpcore's exceptions,
    so that a refusal reads the same whichever endpoint met it - a proxied request, ``POST
    /v1/models/{id}/load``, ``/upstream``: an unknown model is a 404 ``model_not_found``; one
    that can never fit a 507 ``insufficient_capacity``; one that is unavailable (it failed,
    its backend is down, it was unloaded meanwhile, it got no room in time, the service is
    stopping) a 503 ``model_unavailable`` with ``Retry-After`` - the code fallbacks go by.
    Anything else passes through untouched.

    A plain object rather than a ``@contextmanager`` generator: it is on every proxied
    request's path, and entering it allocates nothing.
    """
    return _SUPERVISOR_ERROR_MAP


#: Runtime answers that blame the request although their status says "server error".
#: llama-server raises a plain runtime_error (500) for media a text-only model cannot take ...
_UNSUPPORTED_5XX = re.compile(r"\b(?:image|audio|video) input is not supported", re.IGNORECASE)
#: ... and for malformed input: ``tools`` it cannot parse, a field of the wrong JSON type (nlohmann's
#: ``json.exception``), a token id past its vocabulary (``vector::_M_range_check`` on /detokenize).
_MALFORMED_5XX = re.compile(r"Failed to parse tools|json\.exception\.|_M_range_check")


def is_client_error(status: int) -> bool:
    """A 4xx other than 429: the request itself is at fault, and retrying it cannot help."""
    return 400 <= status < 500 and status != 429


def upstream_error(status: int, payload: Any) -> APIError:
    """Turn a runtime's error body (OpenAI-shaped, llama.cpp-shaped or Ollama's ``{"error": "..."}``) into ours.

    A runtime's refusal of what was asked (501 ``not_supported_error``: embeddings on a
    model started without them; media on a text-only model) becomes 400
    ``invalid_request_error`` with the runtime's message: it is the client's to fix, and
    the OpenAI SDK would otherwise retry a 5xx that can never succeed. So does a 500 for
    malformed input (``invalid_value``): the router checks what it can first (proxy/values.py),
    this catches the rest.
    """
    message = "upstream error"
    type_ = "upstream_error"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = str(error.get("message") or error)
            type_ = str(error.get("type") or type_)
        elif error:
            message = str(error)
    elif payload:
        message = str(payload)[:2000]
    if status == 501 or (status >= 500 and _UNSUPPORTED_5XX.search(message)):
        return APIError(400, message, type="invalid_request_error", code="unsupported_by_model")
    if status >= 500 and _MALFORMED_5XX.search(message):
        return APIError(400, message, type="invalid_request_error", code="invalid_value")
    return APIError(status if 400 <= status < 600 else 502, message, type=type_)


def upstream_error_of(status: int, body: bytes) -> APIError:
    """:func:`upstream_error` for a runtime's raw error body: JSON if it is, else its text."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = body.decode(errors="replace")
    return upstream_error(status, payload)
