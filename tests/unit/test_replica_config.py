"""``replicas``, ``replica_devices`` and ``replica_routing``: what a model with several processes is configured as."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.config import ConfigError, load_settings
from tests.support.configs import smollm2, write_config


def config_error(tmp_path: Path, **model: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path / "config.toml", {"tiny": smollm2(**model)}))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_zero_replicas_is_reported_with_its_key(tmp_path: Path) -> None:
    assert "models.tiny.replicas" in config_error(tmp_path, replicas=0)


def test_replica_devices_must_list_one_entry_per_replica(tmp_path: Path) -> None:
    message = config_error(tmp_path, replicas=2, replica_devices=[[0], [1], [2]])
    assert "models.tiny" in message and "'replica_devices' lists 3 replicas, 'replicas' is 2" in message


def test_replicas_of_a_remote_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'replicas' applies to llamacpp models"):
        load_settings(
            write_config(tmp_path / "config.toml", {"far": {"runtime": "remote", "url": "http://h:1", "replicas": 2}})
        )


def test_an_unknown_routing_is_reported_with_its_key(tmp_path: Path) -> None:
    assert "models.tiny.replica_routing" in config_error(tmp_path, replica_routing="random")


def test_each_replica_has_its_own_name_and_devices_and_the_model_admits_all_their_slots(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path / "config.toml", {"tiny": smollm2(replicas=2, parallel=3, replica_devices=[[0], [1, 2]])})
    )
    model = settings.models["tiny"]
    assert [model.replica(i).replica_name for i in range(2)] == ["tiny#0", "tiny#1"]
    assert [model.replica(i).devices for i in range(2)] == [[0], [1, 2]]
    assert model.total_concurrency == 6 and model.replica(1).concurrency == 3


def test_a_single_replica_keeps_the_models_own_name(tmp_path: Path) -> None:
    model = load_settings(write_config(tmp_path / "config.toml", {"tiny": smollm2()})).models["tiny"]
    assert model.replicas == 1 and model.replica(0).replica_name == "tiny" and model.replica(0).devices is None


def remote_error(tmp_path: Path, **model: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path / "config.toml", {"far": {"runtime": "remote", **model}}))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_empty_urls_are_reported(tmp_path: Path) -> None:
    assert "models.far" in remote_error(tmp_path, urls=[]) and "'urls' is empty" in remote_error(tmp_path, urls=[])


def test_url_and_urls_together_are_reported(tmp_path: Path) -> None:
    assert "set 'url' or 'urls', not both" in remote_error(tmp_path, url="http://a:1", urls=["http://b:1"])


def test_replicas_that_contradict_the_urls_are_reported(tmp_path: Path) -> None:
    message = remote_error(tmp_path, urls=["http://a:1", "http://b:1"], replicas=3)
    assert "'replicas' is 3 but 'urls' lists 2 hosts" in message


def test_each_url_is_a_replica_of_the_remote_model(tmp_path: Path) -> None:
    config = {"far": {"runtime": "remote", "urls": ["http://a:1", "http://b:1"]}}
    model = load_settings(write_config(tmp_path / "config.toml", config)).models["far"]
    assert model.replicas == 2 and [model.replica(i).url for i in range(2)] == ["http://a:1", "http://b:1"]


def test_each_url_of_an_ollama_model_is_a_replica_on_its_own_host(tmp_path: Path) -> None:
    config = {"gem": {"runtime": "ollama", "ollama_model": "gemma3", "urls": ["http://a:11434", "http://b:11434"]}}
    model = load_settings(write_config(tmp_path / "config.toml", config)).models["gem"]
    assert model.replicas == 2 and model.replica(1).url == "http://b:11434"


def test_urls_on_a_llamacpp_model_are_reported(tmp_path: Path) -> None:
    assert "'urls' applies to remote and ollama models" in config_error(tmp_path, urls=["http://a:1"])


def test_more_min_replicas_than_replicas_is_reported(tmp_path: Path) -> None:
    assert "'min_replicas' is 3, more than 'replicas' (2)" in config_error(tmp_path, replicas=2, min_replicas=3)
