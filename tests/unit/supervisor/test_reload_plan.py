"""Which models a config reload adds, removes, restarts, updates in place - or leaves alone."""

from __future__ import annotations

from typing import Any

from inference_service.config import Settings
from inference_service.supervisor.reload import plan


def settings(**models: dict[str, Any]) -> Settings:
    return Settings(models={model_id: {"path": f"{model_id}.gguf", **table} for model_id, table in models.items()})


def test_added_removed_and_unchanged_models() -> None:
    changes = plan(settings(a={}, b={}), settings(a={}, c={}))
    assert changes.summary() == {"added": ["c"], "removed": ["b"], "restarted": [], "updated": []}


def test_a_launch_setting_change_restarts_the_model() -> None:
    for change in (
        {"ctx_size": 4096},
        {"parallel": 4},
        {"path": "other.gguf"},
        {"extra_args": ["--mlock"]},
        {"n_gpu_layers": 99},
    ):
        assert plan(settings(a={}), settings(a=change)).summary()["restarted"] == ["a"], change


def test_routing_and_idle_settings_update_in_place() -> None:
    changes = plan(settings(a={}), settings(a={"aliases": ["alpha"], "ttl_s": 60, "queue_size": 3, "preload": True}))
    assert changes.summary() == {"added": [], "removed": [], "restarted": [], "updated": ["a"]}


def test_top_level_changes_alone_touch_no_model() -> None:
    old, new = settings(a={}), settings(a={})
    new.queue_size = 5
    assert plan(old, new).summary() == {"added": [], "removed": [], "restarted": [], "updated": []}


def test_parallel_restarts_a_llamacpp_model_but_only_recaps_a_remote_one() -> None:
    remote = {"runtime": "remote", "url": "http://127.0.0.1:9/", "parallel": 1}
    changes = plan(
        settings(local={"parallel": 1}, far=remote), settings(local={"parallel": 4}, far={**remote, "parallel": 4})
    )
    # llama-server's slots are on its command line; a remote host's parallel is only the router's cap.
    assert (changes.summary()["restarted"], changes.summary()["updated"]) == (["local"], ["far"])


def test_keys_only_the_router_reads_update_in_place() -> None:
    for change in (
        {"fallbacks": ["b"]},
        {"stream_send_timeout_s": 5.0},
        {"capabilities": ["completion"]},
        {"source": {"packages": ["llm-a==1.0"], "members": ["a.gguf"]}},
    ):
        assert plan(settings(a={}, b={}), settings(a=change, b={})).summary()["updated"] == ["a"], change
