"""Reading a config file into :class:`Settings`: sources in priority order, and any problem as one line naming the key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from inference_service.config.fields import DEFAULT_CONFIG_PATH, ConfigError
from inference_service.config.settings import Settings


def _environment_source(location: list[str], overridden: Collection[str]) -> tuple[str, list[str]] | None:
    """The ``INFERENCE_*`` variable a bad value came from, if any, and the location left inside it.

    Variables override the file, so when one is set for the failing key (or a table
    holding it) the value in error is the variable's - naming the file would send the
    operator to the wrong place.
    """
    if not location or location[0] in overridden:
        return None
    for depth in range(len(location), 0, -1):
        name = "INFERENCE_" + "__".join(location[:depth]).upper()
        if name in os.environ:
            return name, location[depth:]
    return None


def _format_validation_error(source: str, error: ValidationError, overridden: Collection[str] = ()) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if part not in ("function-after", "[key]")]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = 'unknown key (check the spelling; a model id containing dots must be quoted: [models."qwen2.5-7b"])'
    if from_environment := _environment_source(location, overridden):
        source, location = from_environment
    where = f"{source}: {'.'.join(location)}" if location else source
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {message}{extra}"


def config_path_from_env(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("INFERENCE_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration; raise :class:`ConfigError` with one line on any problem."""
    config_path = config_path_from_env(path)
    try:
        with config_path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {config_path}") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8: a Latin-1 comment, a binary file
        raise ConfigError(f"{config_path}: not UTF-8 text: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_path}: invalid TOML: {error}") from None
    except OSError as error:  # a directory, no permission
        raise ConfigError(f"cannot read config file {config_path}: {error.strerror or error}") from None
    from_file = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config_path}})
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings: Settings = from_file(**given)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(str(config_path), error, overridden=given)) from None
    return settings
