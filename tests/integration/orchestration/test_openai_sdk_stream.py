"""The OpenAI SDK's plain streaming loop works on orchestrated streams."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.integration.orchestration.conftest import QUESTION, SHORT
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sdk(router: ServiceProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=router.url + "/v1", api_key="unused", timeout=300.0, max_retries=0) as client:
        yield client


@pytest.mark.parametrize("mode", ["single", "critique"])
def test_the_common_loop_reads_choices_0_of_every_chunk(sdk: openai.OpenAI, mode: str) -> None:
    stream = sdk.chat.completions.create(
        model=SMOLLM2_ID, messages=QUESTION, stream=True, extra_body={"orchestration_mode": mode}, **SHORT
    )
    text, finish_reasons, reports = "", [], []
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""  # raised IndexError on a usage-only chunk
        if chunk.choices[0].finish_reason:
            finish_reasons.append(chunk.choices[0].finish_reason)
            reports.append((chunk.model_extra or {}).get("orchestration"))
    assert text
    assert len(finish_reasons) == 1
    assert reports[0]["mode"] == mode


def test_include_usage_gives_the_sdk_a_final_usage_chunk(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model=SMOLLM2_ID,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"orchestration_mode": "single"},
        **SHORT,
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(chunk.choices and chunk.usage is None for chunk in chunks[:-1])
