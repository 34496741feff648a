"""A model's request filters (``[models.<id>.filters]``), applied to the body that goes upstream.

:func:`apply_filters` is the one place they are applied: the dispatcher calls it for every
call it sends - each API family, each orchestration stage, a fallback (whose own filters
then apply: the model that serves the call decides) - on the body as the runtime will read
it. Filters name fields as an OpenAI chat request does; an API that calls a field otherwise
has its names in :data:`FIELD_NAMES`, so ``max_tokens = 2048`` caps a Responses request's
``max_output_tokens`` too. Ollama's API reaches the dispatcher already translated to
OpenAI's (``options.num_predict`` is ``max_tokens`` by then).

Only generation paths are filtered: embeddings, tokenizing, reranking and counting tokens
take no sampling fields, and the ``/upstream`` pass-through sends the client's bytes as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference_service.config import CAP_KEY, RequestFilters

#: Generation paths -> for each field another API names otherwise, the names that path uses
#: (the first is the one set when the request has none of them); other fields keep their names.
#: llama-server reads its native ``n_predict`` on every path, before ``max_tokens``: a cap that
#: left it alone could be stepped round.
FIELD_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "/v1/chat/completions": {"max_tokens": ("max_tokens", "max_completion_tokens", "n_predict")},
    "/v1/completions": {"max_tokens": ("max_tokens", "n_predict")},
    "/v1/messages": {"max_tokens": ("max_tokens", "n_predict"), "stop": ("stop_sequences",)},
    "/v1/responses": {"max_tokens": ("max_output_tokens", "n_predict")},
    "/infill": {"max_tokens": ("n_predict", "max_tokens")},
}


@dataclass
class FilterChanges:
    """What the filters changed in one call, by the field names that went upstream."""

    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    stripped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.defaults or self.overrides or self.stripped)

    def describe(self) -> list[str]:
        """One short entry per change: ``name=value`` set (a default or an override), ``-name`` removed."""
        return [
            *(f"{name}={value}" for name, value in {**self.defaults, **self.overrides}.items()),
            *(f"-{name}" for name in self.stripped),
        ]


def apply_filters(filters: RequestFilters, path: str, body: dict[str, Any]) -> FilterChanges:
    """Apply ``filters`` to ``body`` (the caller's own copy, changed in place) and say what changed.

    Stripped fields go first, then defaults fill fields the request left out (or null), then
    overrides are set - ``max_tokens`` as a cap: a smaller value of the client's stays, a larger
    or unbounded one (llama-server's ``n_predict = -1``) becomes the cap.
    """
    changes = FilterChanges()
    names = FIELD_NAMES.get(path)
    if names is None or not filters.active:
        return changes
    for key in filters.strip:
        for name in names.get(key, (key,)):
            if name in body:
                del body[name]
                changes.stripped.append(name)
    for key, value in filters.defaults.items():
        fields = names.get(key, (key,))
        if all(body.get(name) is None for name in fields):
            body[fields[0]] = value
            changes.defaults[fields[0]] = value
    for key, value in filters.overrides.items():
        keeps = _within(value) if key == CAP_KEY else _same(value)
        fields = names.get(key, (key,))
        for name in [name for name in fields if body.get(name) is not None] or [fields[0]]:
            if name not in body or not keeps(body[name]):
                body[name] = value
                changes.overrides[name] = value
    return changes


def _within(cap: int) -> Callable[[Any], bool]:
    """A client's token count the cap lets through: a count up to the cap (not -1, "until done")."""
    return lambda value: type(value) is int and 0 <= value <= cap


def _same(wanted: Any) -> Callable[[Any], bool]:
    return lambda value: type(value) is type(wanted) and value == wanted
