"""Which resumed streams are replayed: the requests whose answer comes out the same every time."""

from __future__ import annotations

from typing import Any

import pytest

from inference_service.router.proxy.resume.relay import reproducible


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.7, "top_k": 1}, True),
        ({"temperature": 0.7, "seed": 42}, True),
        ({"seed": 0}, True),
        ({}, False),
        ({"temperature": 0.7}, False),
        ({"temperature": 0.7, "seed": -1}, False),
        ({"seed": 2**32 - 1}, False),
        ({"seed": True}, False),
        ({"seed": "42"}, False),
        ({"temperature": "0"}, False),
    ],
    ids=[
        "greedy",
        "greedy float",
        "top_k 1",
        "seeded",
        "seed 0",
        "runtime defaults",
        "sampled",
        "seed -1 (random)",
        "llama.cpp's random seed",
        "a bool is no seed",
        "a string is no seed",
        "a string is no temperature",
    ],
)
def test_a_request_is_replayed_only_if_its_answer_comes_out_the_same_every_time(
    body: dict[str, Any], expected: bool
) -> None:
    assert reproducible(body) is expected
