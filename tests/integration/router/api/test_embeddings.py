"""``embeddings = true`` alone gives an OpenAI-compatible embeddings model (pooling defaults to mean)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator

import openai
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import smollm2

pytestmark = pytest.mark.integration

EMBED_ID = "smollm2-embed"


@pytest.fixture(scope="module")
def sdk(start_router: StartRouter) -> Iterator[openai.OpenAI]:
    service = start_router({EMBED_ID: smollm2(embeddings=True, preload=True)}, wait_ready=True)
    with openai.OpenAI(base_url=service.url + "/v1", api_key="unused", timeout=120.0, max_retries=0) as client:
        yield client


def test_float_embeddings_are_one_pooled_vector_per_input(sdk: openai.OpenAI) -> None:
    reply = sdk.embeddings.create(
        model=EMBED_ID, input=["hello world", "a different sentence"], encoding_format="float"
    )
    first, second = (item.embedding for item in reply.data)
    assert len(first) == len(second) > 100  # SmolLM2-135M's hidden size is 576
    assert first != second
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, rel_tol=1e-3)  # llama-server normalises


def test_base64_embeddings_decode_to_the_float_vector(sdk: openai.OpenAI) -> None:
    floats = sdk.embeddings.create(model=EMBED_ID, input="hello world", encoding_format="float").data[0].embedding
    raw = sdk.embeddings.with_raw_response.create(model=EMBED_ID, input="hello world", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(decoded, floats, strict=True))
    # and the SDK's own decoding (it asks for base64 when no format is given)
    assert len(sdk.embeddings.create(model=EMBED_ID, input="hello world").data[0].embedding) == len(floats)
