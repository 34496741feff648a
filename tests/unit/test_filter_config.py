"""``[models.<id>.filters]``: a mistake in a model's request filters is one line naming the key, at start-up
and on reload alike (both read the file through ``load_settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference_service.config import ConfigError, RequestFilters, load_settings
from tests.support.configs import smollm2, write_config
from tests.unit.test_config import config_error


def filters_error(tmp_path: Path, filters: dict[str, Any]) -> str:
    return config_error(write_config(tmp_path / "config.toml", {"tiny": smollm2(filters=filters)}))


def test_the_three_rules_are_read_from_the_models_filters_table(tmp_path: Path) -> None:
    filters = {"defaults": {"temperature": 0.6}, "overrides": {"max_tokens": 2048}, "strip": ["top_k", "logit_bias"]}
    settings = load_settings(write_config(tmp_path / "config.toml", {"tiny": smollm2(filters=filters)}))
    assert settings.models["tiny"].filters == RequestFilters(**filters)


def test_a_model_without_filters_has_none_active(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "config.toml", {"tiny": smollm2()}))
    assert not settings.models["tiny"].filters.active


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"default": {"temperature": 0.6}}, "models.tiny.filters.default: unknown key"),
        ({"defaults": {"stop": ["\n"]}}, "models.tiny.filters.defaults: 'stop' must be one value"),
        (
            {"overrides": {"logit_bias": {"1": 2}}},
            "'logit_bias' must be one value (a string, number or boolean), not a",
        ),
        ({"overrides": {"max_tokens": 2.5}}, "models.tiny.filters.overrides: 'max_tokens' must be a whole number"),
        ({"defaults": {"max_tokens": 0}}, "'max_tokens' must be a whole number of tokens, at least 1"),
        ({"strip": ["top_k"], "defaults": {"top_k": 40}}, "models.tiny.filters: 'top_k' is both stripped and set"),
        ({"strip": ["seed"], "overrides": {"seed": 1}}, "'seed' is both stripped and set (in overrides)"),
        ({"defaults": {"seed": 1}, "overrides": {"seed": 2}}, "'seed' is in both defaults and overrides"),
        ({"overrides": {"model": "other"}}, "'model' is the router's to set"),
        ({"strip": ["stream"]}, "'stream' is the router's to set"),
        ({"strip": "top_k"}, "models.tiny.filters.strip: Input should be a valid list"),
    ],
    ids=[
        "unknown-key",
        "array-value",
        "table-value",
        "fractional-cap",
        "zero-cap",
        "stripped-and-defaulted",
        "stripped-and-overridden",
        "default-and-override",
        "router-owned-model",
        "router-owned-stream",
        "strip-not-a-list",
    ],
)
def test_a_bad_filter_is_one_line_naming_it(tmp_path: Path, filters: dict[str, Any], expected: str) -> None:
    assert expected in filters_error(tmp_path, filters)


def test_pinned_must_be_a_boolean(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", {"tiny": smollm2(pinned="always")})
    with pytest.raises(ConfigError, match=r"models\.tiny\.pinned: Input should be a valid boolean"):
        load_settings(path)


def test_an_infinite_number_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", {"tiny": smollm2()})
    path.write_text(path.read_text() + "\n[models.tiny.filters]\ndefaults = { temperature = inf }\n")
    with pytest.raises(ConfigError, match=r"models\.tiny\.filters\.defaults: 'temperature' must be a finite number"):
        load_settings(path)
