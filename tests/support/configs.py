"""Write small TOML config files for tests, pointing at the real tiny models.

Tests that need a config of their own (a crashing model, a capacity limit, a short TTL)
describe it as plain dicts; this renders them so each test's config is visible in the
test itself rather than hidden in a fixture file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

MODELS_DIR = Path(os.environ.get("INFERENCE_CACHE_DIR", Path.home() / ".cache" / "inference-service")) / "models"
SMOLLM2_FILE = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_FILE = MODELS_DIR / "gemma-3-270m-q4_k_m.gguf"
SMOLLM2_ID = "smollm2-135m-instruct"
GEMMA_ID = "gemma-3-270m"

T = TypeVar("T")


def smollm2(**overrides: Any) -> dict[str, Any]:
    """A ``[models.<id>]`` table for SmolLM2 (the fastest model to load), with overrides."""
    return {
        "runtime": "llamacpp",
        "path": str(SMOLLM2_FILE),
        "ctx_size": 512,
        "parallel": 2,
        "n_gpu_layers": 0,
        **overrides,
    }


def gemma(**overrides: Any) -> dict[str, Any]:
    """A ``[models.<id>]`` table for gemma-3-270m, with overrides."""
    return {
        "runtime": "llamacpp",
        "path": str(GEMMA_FILE),
        "ctx_size": 512,
        "parallel": 2,
        "n_gpu_layers": 0,
        **overrides,
    }


def _value(value: Any) -> str:
    """A TOML literal; JSON's string/number/bool/array syntax is valid TOML for these types."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return json.dumps(value)


def render_toml(document: Mapping[str, Any], prefix: str = "") -> str:
    """Render nested dicts as TOML: scalars and arrays first, then one ``[table]`` per dict."""
    scalars = [f"{key} = {_value(value)}" for key, value in document.items() if not isinstance(value, Mapping)]
    tables = [
        f"\n[{prefix}{key}]\n" + render_toml(value, f"{prefix}{key}.")
        for key, value in document.items()
        if isinstance(value, Mapping)
    ]
    return "\n".join(scalars) + "\n" + "".join(tables)


def write_config(path: Path, models: Mapping[str, Mapping[str, Any]], **top_level: Any) -> Path:
    """Write a config with ``models`` (id -> table) and top-level keys; relative paths resolve in MODELS_DIR.

    Saved slot KV caches (``kv_cache_dir``) and the usage database (``usage_db``) go next to the config,
    never to the shared cache dir: a test's router restores only what it saved itself and never writes
    the developer's own ledger.
    """
    document = {
        "host": "127.0.0.1",
        "models_dir": str(MODELS_DIR),
        "kv_cache_dir": str(path.parent / "kv"),
        "usage_db": str(path.parent / "usage.db"),
        **top_level,
        "models": dict(models),
    }
    path.write_text(render_toml(document))
    return path


def wait_until(probe: Callable[[], T], timeout_s: float, interval_s: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout_s:g}s (last result: {result!r})")
        time.sleep(interval_s)


async def eventually(condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.005) -> None:
    """:func:`wait_until` for a test on the event loop: the loop runs while the condition is polled."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout_s:g}s")
        await asyncio.sleep(interval_s)
