"""A request's affinity: chained prefix hashes that a follow-up turn extends, and its session key."""

from __future__ import annotations

from typing import Any

from inference_service.router.proxy.affinity import BLOCK_CHARS, MAX_BLOCKS, affinity_of, prefix_hashes, prompt_parts
from inference_service.router.serving.middleware import session_id_var

SYSTEM = {"role": "system", "content": "You answer questions about the ledger. " * 40}


def turn(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [SYSTEM, *messages]}


def test_a_follow_up_turn_extends_the_previous_turns_prefix() -> None:
    first = prefix_hashes(turn({"role": "user", "content": "What is a ledger?"}))
    second = prefix_hashes(
        turn(
            {"role": "user", "content": "What is a ledger?"},
            {"role": "assistant", "content": "A book of accounts. " * 20},
            {"role": "user", "content": "And a journal?"},
        )
    )
    assert len(first) >= 6 and second[: len(first)] == first and len(second) > len(first)


def test_conversations_with_other_leading_text_share_no_block() -> None:
    ours = prefix_hashes(turn({"role": "user", "content": "hi"}))
    other = prefix_hashes({"messages": [{"role": "system", "content": "Be terse. " * 100}]})
    assert not set(ours) & set(other)


def test_only_complete_blocks_count() -> None:
    assert prefix_hashes({"prompt": "x" * (BLOCK_CHARS - 1)}) == ()
    assert len(prefix_hashes({"prompt": "x" * (2 * BLOCK_CHARS + 5)})) == 2


def test_the_session_header_beats_the_user_field() -> None:
    body = turn({"role": "user", "content": "hi"}) | {"user": "alice"}
    assert affinity_of(body).session == "alice"
    token = session_id_var.set("conversation-7")
    try:
        assert affinity_of(body).session == "conversation-7"
    finally:
        session_id_var.reset(token)


class Unserializable:
    """What ``json`` cannot serialize: reaching it proves the prompt past the hashed blocks was serialized."""


def test_the_prompt_past_the_hashed_blocks_is_never_serialized() -> None:
    past_the_blocks = BLOCK_CHARS * MAX_BLOCKS
    body = {
        "messages": [{"role": "user", "content": "x" * past_the_blocks}, {"role": "user", "image": Unserializable()}]
    }

    assert len(prefix_hashes(body)) == MAX_BLOCKS


def test_a_huge_image_is_serialized_only_as_far_as_the_hashed_blocks() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 20_000_000}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]}

    parts = list(prompt_parts(body, BLOCK_CHARS * MAX_BLOCKS))

    assert sum(map(len, parts)) == BLOCK_CHARS * MAX_BLOCKS
    assert len(prefix_hashes(body)) == MAX_BLOCKS
