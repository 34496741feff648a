"""How each API's stream is continued after its runtime died: what the client already has, the
request that continues it, and the continuation's events rewritten as the rest of the first stream.

The continuation is the same request with the text streamed so far as a final assistant
message. llama-server continues such a message (``--prefill-assistant``, its default) and its
reply *repeats it first* - the first content delta is the prefix and the next token together -
so the repeat is cut off here (:class:`Echo`). The continuation's opening events the client
has already seen (the role chunk, ``message_start``, ``response.created``...) are dropped, its
ids become the first stream's, and its usage is counted for the whole answer: the tokens
generated before the resume, which the continuation read as prompt, count as completion.

A request whose answer comes out the same every time may be *replayed* instead (relay.py):
sent again as it was, its usage then counts itself, and its start is checked against the text
the client has (echo.py's Replay).

Only what was sent is read, once, when the runtime died (the relay keeps the raw runs in a
list): the per-chunk relay does no parsing. A stream that cannot be continued honestly raises
:class:`NotResumable` with the reason, and ends with an error event as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from inference_service.router.proxy.resume.echo import Echo
from inference_service.router.proxy.sse import usage_in


class NotResumable(Exception):
    """Why a stream is not continued: it ends with its protocol's error event, as without resuming."""


@dataclass
class Progress:
    """What the client has of the answer, read from the events it was sent."""

    pieces: list[str] = field(default_factory=list)
    #: The opening events it has (by name; ``role`` for a chat stream's role chunk): not sent again.
    opened: set[str] = field(default_factory=set)
    #: The first stream's ids (and chat's ``created``) by kind: the continuation's own are replaced by them.
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        """Tokens generated so far: llama-server streams one content delta per token."""
        return len(self.pieces)

    def token_limit(self, body: dict[str, Any], keys: Iterable[str]) -> dict[str, int]:
        """The request's token limits, less what was generated already."""
        limits = {key: body[key] - self.tokens for key in keys if isinstance(body.get(key), int)}
        if any(limit < 1 for limit in limits.values()):
            raise NotResumable("the answer had used up its token limit")
        return limits


@dataclass
class Resumed:
    """One continuation being relayed: what it continues, and its ids learnt on the way."""

    progress: Progress
    echo: Echo
    #: Tokens of the answer the continuation read as prompt, counted as completion (a replay's: none).
    shift: int
    #: The continuation's ids (learnt from its opening events) -> the first stream's.
    renamed: dict[str, str] = field(default_factory=dict)


Event = tuple[str | None, dict[str, Any]]


class Continuation(Protocol):
    """One API's way of continuing a stream (see the module's docstring)."""

    def check(self, body: dict[str, Any]) -> None:
        """Raise NotResumable for a request whose stream can never be continued."""

    def read(self, name: str | None, payload: dict[str, Any], progress: Progress) -> None:
        """Take in one event the client was sent; NotResumable if it makes the stream impossible to continue."""

    def request(self, body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """The request that continues the answer."""

    def rewrite(self, name: str | None, payload: dict[str, Any], resumed: Resumed) -> dict[str, Any] | None:
        """A continuation's event as the rest of the first stream (None: dropped)."""


def _events(run: bytes) -> Iterator[tuple[bytes, str | None, bytes]]:
    """Each event of a run: its bytes, its ``event:`` name if any, and its data."""
    for event in run.split(b"\n\n"):
        if not event.strip():
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        yield event, name, b"\n".join(data)


def _json_object(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(b"{"):
        return None  # [DONE], a comment
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def progress_of(continuation: Continuation, sent: Iterable[bytes]) -> Progress:
    """What the client has, read from the runs it was sent."""
    progress = Progress()
    for run in sent:
        for _, name, data in _events(run):
            if (payload := _json_object(data)) is not None:
                continuation.read(name, payload, progress)
    return progress


#: Sent while a replay regenerates what the client has (nothing else is sent meanwhile): an SSE
#: comment, which clients skip, so that their read timeouts and proxies' do not end the stream.
KEEPALIVE = b": resuming\n\n"
KEEPALIVE_S = 10.0


async def rewritten(
    continuation: Continuation,
    blocks: AsyncIterator[bytes],
    resumed: Resumed,
    usage_seen: Callable[[dict[str, Any]], None],
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[bytes]:
    """The continuation's runs of events as the rest of the first stream; ``usage_seen`` gets each usage as rewritten.

    Runs that carry nothing new (the repeat of what was sent) are dropped: a :data:`KEEPALIVE`
    goes instead once ``keepalive_s`` passed since the last run sent.
    """
    quiet_since = time.monotonic()
    async for run in blocks:
        out: list[bytes] = []
        for event, name, data in _events(run):
            payload = _json_object(data)
            if payload is None:
                out.append(event + b"\n\n")
                continue
            rewritten_payload = continuation.rewrite(name, payload, resumed)
            if rewritten_payload is None:
                continue
            if isinstance(usage := usage_in(rewritten_payload), dict):
                usage_seen(usage)
            text = json.dumps(rewritten_payload, ensure_ascii=False, separators=(",", ":"))
            for new, old in resumed.renamed.items():
                text = text.replace(new, old)
            prefix = f"event: {name}\n" if name is not None else ""
            out.append(f"{prefix}data: {text}\n\n".encode())
        if out:
            quiet_since = time.monotonic()
            yield b"".join(out)
        elif time.monotonic() - quiet_since >= keepalive_s:
            quiet_since = time.monotonic()
            yield KEEPALIVE


def shift_usage(usage: object, tokens: int) -> None:
    """Count ``tokens`` generated before the resume (the continuation's prompt) as completion tokens."""
    if not isinstance(usage, dict):
        return
    for prompt_key, completion_key in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
        if isinstance(usage.get(completion_key), int):
            usage[completion_key] += tokens
            if isinstance(usage.get(prompt_key), int):
                usage[prompt_key] = max(usage[prompt_key] - tokens, 0)


def _not_ending_with_assistant(messages: object) -> None:
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        raise NotResumable("the request ends with an assistant message of its own (a prefill)")


def _continuing(
    body: dict[str, Any], progress: Progress, limit_keys: Iterable[str], key: str, items: list[Any], answer: object
) -> dict[str, Any]:
    """``body`` with ``answer`` (the text so far) after its ``items`` under ``key``, and the token limits left.

    Nothing was said yet (the runtime died before its first text): the request as it was.
    """
    limits = progress.token_limit(body, limit_keys)
    if not progress.text:
        return {**body, **limits}
    return {**body, **limits, key: [*items, answer]}


def _finished(name: str | None) -> NotResumable:
    return NotResumable(f"the answer had finished ({name} was sent)")


class ChatContinuation:
    """OpenAI chat completions: ``chat.completion.chunk`` events, ``[DONE]``."""

    def check(self, body: dict[str, Any]) -> None:
        if isinstance(body.get("n"), int) and body["n"] > 1:
            raise NotResumable("n > 1: several answers are streamed at once")
        if body.get("logprobs") or body.get("top_logprobs"):
            raise NotResumable("logprobs: the continuation's would describe another prompt")
        _not_ending_with_assistant(body.get("messages"))

    def read(self, name: str | None, payload: dict[str, Any], progress: Progress) -> None:
        for key in ("id", "created"):
            if key in payload:
                progress.ids.setdefault(key, payload[key])
        if payload.get("usage"):
            raise _finished("usage")
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                raise NotResumable("tool-call deltas were sent")
            if delta.get("reasoning_content"):
                raise NotResumable("reasoning deltas were sent")
            if choice.get("finish_reason"):
                raise _finished("finish_reason")
            if "role" in delta:
                progress.opened.add("role")
            if content := delta.get("content"):
                progress.pieces.append(content)

    def request(self, body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        answer = {"role": "assistant", "content": progress.text}
        return _continuing(
            body, progress, ("max_tokens", "max_completion_tokens"), "messages", body["messages"], answer
        )

    def rewrite(self, name: str | None, payload: dict[str, Any], resumed: Resumed) -> dict[str, Any] | None:
        payload.update({key: value for key, value in resumed.progress.ids.items() if key in payload})
        shift_usage(payload.get("usage"), resumed.shift)
        keep = bool(payload.get("usage"))
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            if "role" in delta and "role" in resumed.progress.opened:
                del delta["role"]
            if delta.get("content"):
                delta["content"] = resumed.echo.strip(delta["content"])
            if not delta.get("content"):
                delta.pop("content", None)
            if choice.get("finish_reason"):
                resumed.echo.ending()
            keep = keep or bool(delta) or bool(choice.get("finish_reason"))
        return payload if keep else None


class MessagesContinuation:
    """Anthropic Messages: ``message_start``, one text block's deltas, ``message_delta``, ``message_stop``."""

    _OPENING = frozenset({"message_start", "content_block_start"})

    def check(self, body: dict[str, Any]) -> None:
        _not_ending_with_assistant(body.get("messages"))

    def read(self, name: str | None, payload: dict[str, Any], progress: Progress) -> None:
        if name == "content_block_start" and (block := payload.get("content_block") or {}).get("type") != "text":
            raise NotResumable(f"a {block.get('type')} block was sent")
        if name in self._OPENING:
            progress.opened.add(name)
        elif name == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") != "text_delta":
                raise NotResumable(f"{delta.get('type')} deltas were sent")
            if text := delta.get("text"):
                progress.pieces.append(text)
        elif name != "ping":
            raise _finished(name)

    def request(self, body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        answer = {"role": "assistant", "content": progress.text}
        return _continuing(body, progress, ("max_tokens",), "messages", body["messages"], answer)

    def rewrite(self, name: str | None, payload: dict[str, Any], resumed: Resumed) -> dict[str, Any] | None:
        if name in resumed.progress.opened:
            return None
        if name == "content_block_delta" and (delta := payload.get("delta") or {}).get("type") == "text_delta":
            delta["text"] = resumed.echo.strip(delta.get("text") or "")
            return payload if delta["text"] else None
        if name in ("message_delta", "message_stop"):
            resumed.echo.ending()
        shift_usage(payload.get("usage"), resumed.shift)
        return payload


class ResponsesContinuation:
    """OpenAI Responses: ``response.created``, one message item's text deltas, ``response.completed``."""

    _OPENING = frozenset(
        {"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
    )
    #: Where each opening event names an id the continuation's events must carry as the first stream's.
    _IDS: ClassVar[dict[str, tuple[str, str]]] = {
        "response.created": ("response", "resp"),
        "response.output_item.added": ("item", "msg"),
    }

    def check(self, body: dict[str, Any]) -> None:
        if body.get("top_logprobs"):
            raise NotResumable("logprobs: the continuation's would describe another prompt")
        _not_ending_with_assistant(body.get("input"))

    def read(self, name: str | None, payload: dict[str, Any], progress: Progress) -> None:
        if name == "response.output_item.added" and (item := payload.get("item") or {}).get("type") != "message":
            raise NotResumable(f"a {item.get('type')} item was sent")
        if name in self._OPENING:
            progress.opened.add(name)
            if name in self._IDS:
                holder, kind = self._IDS[name]
                progress.ids.setdefault(kind, (payload.get(holder) or {}).get("id"))
        elif name == "response.output_text.delta":
            if delta := payload.get("delta"):
                progress.pieces.append(delta)
        else:
            raise _finished(name)

    def request(self, body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        given = body.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
        answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": progress.text}]}
        return _continuing(body, progress, ("max_output_tokens",), "input", items, answer)

    def rewrite(self, name: str | None, payload: dict[str, Any], resumed: Resumed) -> dict[str, Any] | None:
        if name in self._IDS:
            holder, kind = self._IDS[name]
            new, old = (payload.get(holder) or {}).get("id"), resumed.progress.ids.get(kind)
            if isinstance(new, str) and isinstance(old, str):
                resumed.renamed[new] = old
        if name in resumed.progress.opened:
            return None
        if name == "response.output_text.delta":
            payload["delta"] = resumed.echo.strip(payload.get("delta") or "")
            return payload if payload["delta"] else None
        if name not in self._OPENING:
            resumed.echo.ending()
        shift_usage(usage_in(payload), resumed.shift)
        return payload


#: The streams that resume, by upstream path (Ollama's /api/chat is a chat stream upstream).
CONTINUATIONS: dict[str, Continuation] = {
    "/v1/chat/completions": ChatContinuation(),
    "/v1/messages": MessagesContinuation(),
    "/v1/responses": ResponsesContinuation(),
}
