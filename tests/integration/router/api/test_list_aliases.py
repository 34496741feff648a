"""``list_aliases``: each alias listed in /v1/models as its own entry, for clients that check the list."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def test_aliases_are_not_listed_by_default(router: ServiceProcess) -> None:
    ids = [card["id"] for card in httpx.get(router.url + "/v1/models", timeout=10).json()["data"]]
    assert SMOLLM2_ID in ids and "smol" not in ids


def test_list_aliases_lists_each_alias_pointing_at_its_model(start_router: StartRouter) -> None:
    # An Ollama model is never contacted by /v1/models: no runtime needed to test the listing.
    models = {"qwen": {"runtime": "ollama", "ollama_model": "qwen2.5:0.5b", "aliases": ["q", "qwen-small"]}}
    service = start_router(models, list_aliases=True, runtimes={"ollama": {"url": "http://127.0.0.1:9"}})
    with openai.OpenAI(base_url=service.url + "/v1", api_key="unused", max_retries=0) as sdk:
        listed = {model.id: model for model in sdk.models.list()}
    assert set(listed) == {"qwen", "q", "qwen-small"}
    assert listed["q"].model_extra["alias_of"] == "qwen" and listed["qwen-small"].model_extra["alias_of"] == "qwen"
    assert "alias_of" not in listed["qwen"].model_extra
    assert listed["q"].model_extra["capabilities"] == listed["qwen"].model_extra["capabilities"]
