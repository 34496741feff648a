"""The official OpenAI Python SDK works against the router without any adaptation."""

from __future__ import annotations

import openai
import pytest

from tests.integration.router.conftest import HI
from tests.support.configs import SMOLLM2_ID

pytestmark = pytest.mark.integration


def test_models_list_returns_the_configured_models(sdk: openai.OpenAI) -> None:
    ids = {model.id for model in sdk.models.list()}
    assert SMOLLM2_ID in ids


def test_chat_completion_returns_an_assistant_message(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model=SMOLLM2_ID, messages=HI, max_tokens=4, temperature=0)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_streamed_chat_completion_yields_content_deltas_and_a_finish_reason(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model=SMOLLM2_ID, messages=HI, max_tokens=4, temperature=0, stream=True)
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_unknown_model_raises_not_found_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="no-such-model", messages=HI, max_tokens=1)
    assert "no-such-model" in caught.value.message


def test_empty_messages_raise_unprocessable_entity_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.create(model=SMOLLM2_ID, messages=[], max_tokens=1)
    assert caught.value.body["param"] == "messages"  # type: ignore[index]
