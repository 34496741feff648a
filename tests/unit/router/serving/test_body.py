"""The JSON nesting check that runs before any recursive decoding."""

from __future__ import annotations

import json

import pytest

from inference_service.router.serving.body import MAX_NESTING_DEPTH, too_deeply_nested


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (nested(MAX_NESTING_DEPTH), False),
        (nested(MAX_NESTING_DEPTH + 1), True),
        (b'{"a": ' + nested(MAX_NESTING_DEPTH - 1) + b"}", False),
        (b'{"a": ' + nested(MAX_NESTING_DEPTH) + b"}", True),
        (nested(100_000), True),
        (b"[]" * 10_000, False),  # many brackets, all shallow
    ],
)
def test_depth_is_counted_over_arrays_and_objects(body: bytes, too_deep: bool) -> None:
    assert too_deeply_nested(body) is too_deep


def test_brackets_inside_strings_are_not_nesting() -> None:
    body = json.dumps({"content": "[" * 1000 + "{" * 1000, "other": "]]]]" + "[" * 100}).encode()
    assert not too_deeply_nested(body)


def test_escaped_quotes_do_not_hide_real_nesting() -> None:
    body = json.dumps({"a": 'say \\"[[[[" and \\\\', "b": json.loads(nested(MAX_NESTING_DEPTH + 1))}).encode()
    assert too_deeply_nested(body)
