"""ModelResolver: a name to the model id it means, and - for the routes that name a model for a key -
whether that key may use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference_service.config import Settings
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.keys import Tenant

RESOLVER = ModelResolver(Settings(models={"mine": {"path": "m.gguf", "aliases": ["m"]}, "theirs": {"path": "t.gguf"}}))


@pytest.fixture
def limited_key() -> Iterator[Tenant]:
    """The request acts for a key that may use ``mine`` only."""
    tenant = Tenant("batch", frozenset({"inference"}), models=frozenset({"mine"}))
    token = keys.act_as(tenant)
    yield tenant
    keys.release(token)


@pytest.mark.usefixtures("limited_key")
def test_an_unknown_name_lists_only_the_models_the_key_may_use() -> None:
    with pytest.raises(APIError) as refused:
        RESOLVER.resolve("nope")
    assert (refused.value.status, refused.value.code) == (404, "model_not_found")
    assert refused.value.message.endswith("Available: mine"), refused.value.message


@pytest.mark.usefixtures("limited_key")
def test_usable_is_a_403_for_a_model_outside_the_keys_models() -> None:
    with pytest.raises(APIError) as refused:
        RESOLVER.usable("theirs")
    assert (refused.value.status, refused.value.code, refused.value.param) == (403, "permission_denied", "model")


@pytest.mark.usefixtures("limited_key")
def test_usable_resolves_an_alias_of_the_keys_model() -> None:
    assert RESOLVER.usable("m") == "mine"
