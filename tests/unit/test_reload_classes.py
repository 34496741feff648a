"""Every setting declares what a config reload does with it, and everything else follows.

The reload's start-up keys and its plan for the models used to be hand lists beside the
settings; ``shutdown_grace_s`` was in neither, and a reload ignored it without a word.
"""

from __future__ import annotations

import re
from typing import get_args

import pytest
from pydantic import BaseModel

from inference_service.config import REPO_ROOT, ModelConfig, RuntimeKind, Settings, on_reload
from inference_service.router.config_reload import STARTUP_KEYS

FIELDS = [(Settings, name) for name in Settings.model_fields] + [
    (ModelConfig, name) for name in ModelConfig.model_fields
]


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=[f"{model.__name__}.{name}" for model, name in FIELDS])
def test_every_field_declares_what_a_reload_does_with_it(model: type[BaseModel], name: str) -> None:
    # Top-level keys apply at once or need a restart of the service; a model key may restart just the model.
    allowed = ("live", "startup") if model is Settings else ("live", "restart")
    assert on_reload(model, name).effect in allowed


def test_a_field_without_a_reload_class_is_named() -> None:
    class Unmarked(BaseModel):
        new_knob: int = 0

    with pytest.raises(TypeError, match=r"Unmarked\.new_knob needs one reload class"):
        on_reload(Unmarked, "new_knob")


def test_the_reload_reports_exactly_the_startup_keys() -> None:
    assert set(STARTUP_KEYS) == {
        name for name in Settings.model_fields if on_reload(Settings, name).effect == "startup"
    }
    assert "shutdown_grace_s" not in STARTUP_KEYS  # applied by the reload: the next stop drains for the new grace


def _keys(text: str, among: dict[str, object]) -> set[str]:
    return {name for name in re.findall(r"`([a-z_]+)`", text) if name in among}


def test_the_readme_lists_each_key_under_what_a_reload_does_with_it() -> None:
    section = (REPO_ROOT / "README.md").read_text().split("### Config reload", 1)[1].split("\n### ", 1)[0]
    restarting = section[section.index("launch settings changed") : section.index("models whose other keys changed")]
    in_place = section[section.index("models whose other keys changed") : section.index("**top-level keys**")]
    top_live, top_startup = section[section.index("**top-level keys**") :].split("Keys read only at start-up")

    def model_keys(restarts: bool) -> set[str]:
        """Model keys that restart some runtime's models (or, ``restarts=False``, leave some in place)."""
        runtimes = get_args(RuntimeKind)
        marks = {name: on_reload(ModelConfig, name) for name in ModelConfig.model_fields if name != "id"}
        return {name for name, mark in marks.items() if any(mark.restarts(r) == restarts for r in runtimes)}

    def settings_keys(effect: str) -> set[str]:
        return {name for name in Settings.model_fields if on_reload(Settings, name).effect == effect}

    assert _keys(restarting, ModelConfig.model_fields) == model_keys(restarts=True)
    assert _keys(in_place, ModelConfig.model_fields) == model_keys(restarts=False)
    assert _keys(top_live, Settings.model_fields) == settings_keys("live") - {"models"}  # the bullets above
    assert _keys(top_startup, Settings.model_fields) == settings_keys("startup")
