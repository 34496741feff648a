"""The runtime's answers as Ollama's: one JSON object, or NDJSON lines for a stream.

The upstream answered in OpenAI's shape (llama-server's native one for ``/infill``); an
answer becomes ``{"message": ...}`` (``/api/chat``) or ``{"response": ...}``
(``/api/generate``), and its end the ``done: true`` object with Ollama's statistics, in
nanoseconds: ``prompt_eval_duration`` and ``eval_duration`` are the runtime's own timings
where it reports them (llama-server does), else measured here; ``load_duration`` is the rest
of ``total_duration`` - the wait for a slot and for the model to load.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inference_service.router.api.ollama.requests import Source
from inference_service.router.proxy.sse import StreamProtocol

NDJSON = b"application/x-ndjson"


def created_at() -> str:
    """Now, as Ollama writes it: RFC 3339 in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_line(message: str) -> bytes:
    """A stream's error, as Ollama ends a broken stream: one ``{"error": ...}`` line."""
    return json.dumps({"error": message}).encode() + b"\n"


def _arguments(text: Any) -> dict[str, Any]:
    """OpenAI's arguments (a JSON string) as Ollama's (an object); a non-object kept whole under ``arguments``."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        value = text
    return value if isinstance(value, dict) else {"arguments": value}


def _tool_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    converted: dict[str, Any] = {
        "function": {
            "index": index,
            "name": function.get("name", ""),
            "arguments": _arguments(function.get("arguments")),
        }
    }
    if call.get("id"):
        converted["id"] = call["id"]
    return converted


@dataclass
class _Answer:
    """What the runtime said so far, and what ended it."""

    content: str = ""
    thinking: str = ""
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> OpenAI call, streamed in parts
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)

    def read(self, source: Source, payload: dict[str, Any], whole: bool) -> None:
        """Take in a chunk (``whole``: the complete reply); ``content``/``thinking`` hold this one's text."""
        self.content = self.thinking = ""
        if source is Source.INFILL:
            self.content = payload.get("content") or ""
            if payload.get("stop") or whole:
                self.finish_reason = "length" if payload.get("stop_type") == "limit" else "stop"
                self.usage = {
                    "prompt_tokens": payload.get("tokens_evaluated"),
                    "completion_tokens": payload.get("tokens_predicted"),
                }
        for choice in payload.get("choices") or ():
            part = choice.get("message" if whole else "delta") or {}
            if source is Source.COMPLETION:
                self.content += choice.get("text") or ""
            else:
                self.content += part.get("content") or ""
                self.thinking += part.get("reasoning_content") or part.get("reasoning") or ""
            for position, call in enumerate(part.get("tool_calls") or ()):
                self._add_tool_call(call.get("index", position), call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        self.usage = payload.get("usage") or self.usage
        self.timings = payload.get("timings") or self.timings

    def _add_tool_call(self, index: int, delta: dict[str, Any]) -> None:
        """Merge a streamed part of a call (its id and name first, its arguments in pieces)."""
        call = self.tool_calls.setdefault(index, {"function": {"name": "", "arguments": ""}})
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        arguments = function.get("arguments") or ""
        call["function"]["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)

    def take_tool_calls(self) -> list[dict[str, Any]]:
        calls = [_tool_call(index, self.tool_calls[index]) for index in sorted(self.tool_calls)]
        self.tool_calls = {}
        return calls


def _ns(seconds: float) -> int:
    return max(int(seconds * 1e9), 0)


class OllamaReply:
    """Builds one request's Ollama objects: the pieces of an answer and its ``done`` object.

    ``chat``: ``/api/chat``'s ``message`` objects, else ``/api/generate``'s ``response``.
    ``started``: ``time.perf_counter()`` when the request came in.
    """

    def __init__(self, source: Source, chat: bool, model: str, started: float) -> None:
        self._source = source
        self._chat = chat
        self._model = model
        self._started = started
        self._first_token_at: float | None = None
        self._answer = _Answer()

    def _piece(self, content: str, thinking: str, tool_calls: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        piece: dict[str, Any] = {"model": self._model, "created_at": created_at()}
        if self._chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            piece["message"] = message
        else:
            piece["response"] = content
            if thinking:
                piece["thinking"] = thinking
        piece["done"] = done
        return piece

    def _statistics(self) -> dict[str, Any]:
        answer, now = self._answer, time.perf_counter()
        total = now - self._started
        if "prompt_ms" in answer.timings and "predicted_ms" in answer.timings:
            prompt, generation = answer.timings["prompt_ms"] / 1000, answer.timings["predicted_ms"] / 1000
        elif self._first_token_at is not None:
            prompt, generation = self._first_token_at - self._started, now - self._first_token_at
        else:
            prompt, generation = 0.0, total
        return {
            "done_reason": "length" if answer.finish_reason == "length" else "stop",
            "total_duration": _ns(total),
            "load_duration": _ns(total - prompt - generation),
            "prompt_eval_count": int(answer.usage.get("prompt_tokens") or 0),
            "prompt_eval_duration": _ns(prompt),
            "eval_count": int(answer.usage.get("completion_tokens") or 0),
            "eval_duration": _ns(generation),
        }

    def whole(self, reply: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed upstream reply as one Ollama object."""
        self._answer.read(self._source, reply, whole=True)
        answer = self._answer
        return {**self._piece(answer.content, answer.thinking, answer.take_tool_calls(), True), **self._statistics()}

    def event(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """One upstream stream event -> the Ollama objects it makes (the answer's text, its tool calls
        once they are complete, the ``done`` object after an ``/infill`` stream's last event)."""
        answer = self._answer
        answer.read(self._source, payload, whole=False)
        pieces = []
        if answer.content or answer.thinking:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            pieces.append(self._piece(answer.content, answer.thinking, [], False))
        if answer.finish_reason and answer.tool_calls:
            pieces.append(self._piece("", "", answer.take_tool_calls(), False))
        if self._source is Source.INFILL and answer.finish_reason:
            pieces.append(self.done())
        return pieces

    def settled(self, done_reason: str) -> dict[str, Any]:
        """The answer to a request that only loaded or unloaded the model (``load``, ``unload``)."""
        return {**self._piece("", "", [], True), "done_reason": done_reason}

    def done(self) -> dict[str, Any]:
        """The stream's last object; tool calls not yet sent go in it."""
        return {**self._piece("", "", self._answer.take_tool_calls(), True), **self._statistics()}


class NDJSONFrames:
    """A stream's framing for its client: runs of upstream SSE events in, Ollama's NDJSON out.

    Called by the relay with each run of complete events (see ``StreamProtocol.reframe``);
    the stream's end (``[DONE]``, or ``/infill``'s last chunk) becomes the ``done`` line, an
    upstream error event an ``{"error": ...}`` line after which nothing more is sent.
    """

    def __init__(self, reply: OllamaReply) -> None:
        self._reply = reply
        self._over = False

    def __call__(self, block: bytes) -> bytes:
        objects: list[dict[str, Any]] = []
        for event in block.split(b"\n\n"):
            data = next((line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")), None)
            if data is None or self._over:
                continue
            if data == b"[DONE]":
                objects.append(self._reply.done())
                self._over = True
                continue
            try:
                payload = json.loads(data)
            except ValueError:
                payload = {"error": "the runtime sent an event that is not JSON"}
            if not isinstance(payload, dict) or "error" in payload:
                return self._end(objects, _error_message(payload))
            objects += self._reply.event(payload)
            self._over = self._over or any(piece["done"] for piece in objects)
        return b"".join(json.dumps(piece, separators=(",", ":")).encode() + b"\n" for piece in objects)

    def _end(self, objects: list[dict[str, Any]], message: str) -> bytes:
        self._over = True
        lines = b"".join(json.dumps(piece, separators=(",", ":")).encode() + b"\n" for piece in objects)
        return lines + error_line(message)


def _error_message(payload: Any) -> str:
    error = payload.get("error") if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def ndjson_protocol(upstream: StreamProtocol, reply: OllamaReply) -> StreamProtocol:
    """The stream protocol of an Ollama stream relayed from ``upstream``: its end where the
    upstream's is, reframed as NDJSON, errors in Ollama's shape."""
    return StreamProtocol(
        end_of_last=upstream.end_of_last,
        error_ending=lambda message, _code: error_line(message),
        reframe=NDJSONFrames(reply),
        content_type=NDJSON,
    )
