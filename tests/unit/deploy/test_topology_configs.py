"""deploy/topology/: the three configs fit together (the integration suite runs them for real)."""

from __future__ import annotations

from inference_service.config import load_settings
from tests.support.deploy import yaml_documents
from tests.support.topology import BACK_CONFIG, FRONT_CONFIG, GATEWAY_CONFIG, GATEWAY_MODEL, MODEL_ID


def test_back_router_serves_the_pool_model_from_a_preload() -> None:
    back = load_settings(BACK_CONFIG)
    model = back.models[MODEL_ID]
    assert model.runtime == "llamacpp" and model.preload, "readiness must mean the model is loaded"
    assert model.source is not None, "`models pull --config back.toml` must be able to fetch it"


def test_gateway_pools_every_back_router_under_one_model_name() -> None:
    (gateway,) = yaml_documents(GATEWAY_CONFIG)
    entries = gateway["model_list"]
    assert len(entries) >= 2
    assert {entry["model_name"] for entry in entries} == {GATEWAY_MODEL}
    assert len({entry["model_info"]["id"] for entry in entries}) == len(entries), "deployment ids must differ"
    assert len({entry["litellm_params"]["api_base"] for entry in entries}) == len(entries)
    served = load_settings(BACK_CONFIG).models
    assert {entry["litellm_params"]["model"].removeprefix("openai/") for entry in entries} <= served.keys()


def test_gateway_retries_on_another_router_and_takes_a_dead_one_out() -> None:
    (gateway,) = yaml_documents(GATEWAY_CONFIG)
    settings = gateway["router_settings"]
    assert settings["num_retries"] >= 1
    assert settings["allowed_fails"] >= 0 and 0 < settings["cooldown_time"] <= 60


def test_front_lists_the_back_routers_model_as_remote_next_to_a_local_one() -> None:
    front = load_settings(FRONT_CONFIG)
    remote = front.models[MODEL_ID]
    assert remote.runtime == "remote" and remote.health_path == "/health/ready"
    assert remote.preload, "an unloaded remote model is not probed until a request comes"
    assert remote.model_name_upstream in load_settings(BACK_CONFIG).models
    local = [model for model in front.models.values() if model.runtime == "llamacpp"]
    assert local, "the front router needs a model of its own"
    (preset,) = front.presets.values()
    assert set(preset.models) == {MODEL_ID, *(model.id for model in local)}
