"""A conversation's prefix survives the stops nobody asks for: the idle TTL, and the router's own shutdown."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.continuity.conftest import StartService
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.conversation import LONG_CONTEXT, TURN_TIMEOUT_S, Conversation, assert_prefix_kept, warm_turn
from tests.support.service import running_service


def test_an_idle_ttl_unload_keeps_the_conversation_prefix(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(**LONG_CONTEXT, ttl_s=3)})
    conversation = Conversation(SMOLLM2_ID)
    with httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client:
        warm = warm_turn(conversation, client)
        wait_until(lambda: model_card(service, SMOLLM2_ID)["status"] == "unloaded", timeout_s=120)
        after = conversation.next_turn(client)
    assert_prefix_kept(warm, after)


def test_a_router_restart_keeps_the_conversation_prefix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", {SMOLLM2_ID: smollm2(**LONG_CONTEXT)})
    conversation = Conversation(SMOLLM2_ID)
    with (
        running_service(config, tmp_path / "logs") as first,
        httpx.Client(base_url=first.url, timeout=TURN_TIMEOUT_S) as client,
    ):
        warm = warm_turn(conversation, client)
    # The first router has shut down (SIGTERM: its model stopped gracefully); a new one serves the next turn.
    with (
        running_service(config, tmp_path / "logs") as second,
        httpx.Client(base_url=second.url, timeout=TURN_TIMEOUT_S) as client,
    ):
        after = conversation.next_turn(client)
    assert_prefix_kept(warm, after)
