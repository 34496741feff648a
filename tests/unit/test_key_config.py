"""``[keys.<name>]``: the secret from a literal, the environment or a digest; every mistake one line."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from inference_service.config import ConfigError, load_settings
from tests.support.configs import smollm2, write_config

SECRET = "s3cret-value"
DIGEST = hashlib.sha256(SECRET.encode()).digest()


def load(tmp_path: Path, keys: dict[str, dict[str, Any]], **top: Any) -> Any:
    models = {"tiny": smollm2(aliases=["t"]), "embed-small": smollm2(), "embed-large": smollm2()}
    return load_settings(write_config(tmp_path / "config.toml", models, keys=keys, **top))


def error(tmp_path: Path, keys: dict[str, dict[str, Any]], **top: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, keys, **top)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_literal_key_is_kept_as_its_digest(tmp_path: Path) -> None:
    settings = load(tmp_path, {"ops": {"key": SECRET, "scopes": ["admin"]}})
    assert settings.keys["ops"].name == "ops" and settings.keys["ops"].digest == DIGEST


def test_a_key_from_the_environment_is_read_when_the_config_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_KEY", SECRET)
    assert load(tmp_path, {"ops": {"key": "env:OPS_KEY", "scopes": ["admin"]}}).keys["ops"].digest == DIGEST


def test_a_sha256_key_keeps_no_secret(tmp_path: Path) -> None:
    key = load(tmp_path, {"ops": {"sha256": DIGEST.hex(), "scopes": ["admin"]}}).keys["ops"]
    assert key.key is None and key.digest == DIGEST


def test_a_missing_environment_variable_is_one_line_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    message = error(tmp_path, {"ops": {"key": "env:NO_SUCH_KEY_VAR", "scopes": ["admin"]}})
    assert "keys.ops.key" in message and "NO_SUCH_KEY_VAR" in message


@pytest.mark.parametrize(
    "table",
    [{"scopes": ["admin"]}, {"key": SECRET, "sha256": DIGEST.hex(), "scopes": ["admin"]}],
    ids=["neither", "both"],
)
def test_a_key_needs_exactly_one_secret(tmp_path: Path, table: dict[str, Any]) -> None:
    assert "exactly one of 'key'" in error(tmp_path, {"ops": table})


def test_a_sha256_that_is_not_a_hex_digest_is_refused(tmp_path: Path) -> None:
    assert "keys.ops.sha256" in error(tmp_path, {"ops": {"sha256": "abc", "scopes": ["admin"]}})


@pytest.mark.parametrize(
    "digest", [hashlib.sha256(b"").hexdigest(), hashlib.sha256(b"").hexdigest().upper()], ids=["lower", "upper"]
)
def test_the_sha256_of_an_empty_secret_is_refused(tmp_path: Path, digest: str) -> None:
    """``printf %s "$SECRET" | sha256sum`` with SECRET unset: the key would need no secret at all."""
    assert "keys.ops.sha256" in error(tmp_path, {"ops": {"sha256": digest, "scopes": ["admin"]}})


def test_an_empty_api_key_is_refused(tmp_path: Path) -> None:
    assert "api_key is empty" in error(tmp_path, {}, api_key="")


def test_an_unknown_scope_is_refused(tmp_path: Path) -> None:
    assert "keys.ops.scopes" in error(tmp_path, {"ops": {"key": SECRET, "scopes": ["root"]}})


def test_a_key_without_scopes_is_refused(tmp_path: Path) -> None:
    assert "keys.ops.scopes" in error(tmp_path, {"ops": {"key": SECRET, "scopes": []}})


def test_a_model_name_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, {"batch": {"key": SECRET, "scopes": ["inference"], "models": ["qwen"]}})
    assert "keys.batch.models" in message and "'qwen'" in message


def test_a_glob_may_match_no_model_yet(tmp_path: Path) -> None:
    assert load(tmp_path, {"b": {"key": SECRET, "scopes": ["inference"], "models": ["qwen-*"]}}).keys["b"].models == [
        "qwen-*"
    ]


def test_two_keys_with_one_secret_are_refused(tmp_path: Path) -> None:
    keys = {"a": {"key": SECRET, "scopes": ["read"]}, "b": {"sha256": DIGEST.hex(), "scopes": ["admin"]}}
    assert "keys.b: the same secret as keys.a" in error(tmp_path, keys)


def test_the_api_key_cannot_be_a_keys_secret_too(tmp_path: Path) -> None:
    assert "the same secret" in error(tmp_path, {"a": {"key": SECRET, "scopes": ["read"]}}, api_key=SECRET)
