"""Prompts and completions as span attributes - only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Prompts are private: nothing here runs unless the operator opted in. The shapes are the
GenAI conventions' (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``: a role and a list of typed parts), recorded as JSON strings,
which the conventions allow on spans. OpenAI chat and completions, Anthropic Messages and
Responses bodies are understood; a part that is not text (an image, audio) is named by its
type, never copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, list):
        return []
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "content": part})
        elif isinstance(part, dict) and part.get("type") in _TEXT_PARTS:
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, dict):
            parts.append({"type": str(part.get("type", "unknown"))})
    return parts


def _message(message: Mapping[str, Any], default_role: str) -> dict[str, Any]:
    parts = _parts(message.get("content"))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    if message.get("role") == "tool":
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}]
    return {"role": str(message.get("role") or default_role), "parts": parts}


def input_attributes(body: Mapping[str, Any]) -> dict[str, str]:
    """``gen_ai.input.messages`` (and ``gen_ai.system_instructions`` for Anthropic's ``system``)."""
    source = body.get("messages", body.get("input", body.get("prompt")))
    if isinstance(source, str):
        messages = [{"role": "user", "parts": _parts(source)}]
    elif isinstance(source, list):
        messages = [_message(item, "user") for item in source if isinstance(item, dict)]
    else:
        messages = []
    attributes = {"gen_ai.input.messages": json.dumps(messages)} if messages else {}
    if system := _parts(body.get("system")):
        attributes["gen_ai.system_instructions"] = json.dumps(system)
    return attributes


def _outputs(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(choices := reply.get("choices"), list):  # OpenAI chat and completions
        return [
            {
                **_message(choice.get("message") or {"content": choice.get("text", "")}, "assistant"),
                "finish_reason": choice.get("finish_reason") or "error",
            }
            for choice in choices
            if isinstance(choice, dict)
        ]
    if isinstance(reply.get("content"), list):  # Anthropic Messages
        return [{"role": "assistant", "parts": _parts(reply["content"]), "finish_reason": reply.get("stop_reason")}]
    if isinstance(output := reply.get("output"), list):  # Responses
        return [
            {**_message(item, "assistant"), "finish_reason": reply.get("status") or "error"}
            for item in output
            if isinstance(item, dict) and item.get("type") == "message"
        ]
    return []


def output_attributes(reply: bytes) -> dict[str, str]:
    """``gen_ai.output.messages`` of a whole (non-streamed) reply; nothing if it is not a JSON answer."""
    try:
        payload = json.loads(reply)
    except ValueError:
        return {}
    outputs = _outputs(payload) if isinstance(payload, dict) else []
    return {"gen_ai.output.messages": json.dumps(outputs)} if outputs else {}
