"""The tree is the architecture: its size rules hold, and the README's Layout section names what is there.

A newcomer reads the Layout section first; a folder missing from it (or one it names that no
longer exists) sends them the wrong way, so the section is checked against the tree like code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "inference_service"
MAX_MODULE_LINES = 400
MAX_MODULES_PER_FOLDER = 15


def _packages() -> list[Path]:
    return sorted(init.parent for init in PACKAGE.rglob("__init__.py"))


def _layout_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(REPO)))
def test_no_module_is_over_400_lines(module: Path) -> None:
    assert len(module.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("folder", _packages(), ids=lambda path: str(path.relative_to(REPO)))
def test_no_folder_holds_over_15_modules(folder: Path) -> None:
    modules = [path for path in folder.glob("*.py") if path.name != "__init__.py"]
    assert len(modules) <= MAX_MODULES_PER_FOLDER, sorted(path.name for path in modules)


def test_the_readme_layout_names_every_package_folder() -> None:
    named = set(re.findall(r"([a-z_][a-z0-9_-]*/)", _layout_block()))
    missing = [str(folder.relative_to(PACKAGE)) for folder in _packages() if f"{folder.name}/" not in named]
    assert not missing, f"README's Layout section does not name: {missing}"


def test_every_folder_the_readme_layout_names_exists() -> None:
    folders = {path.name for path in REPO.rglob("*") if path.is_dir() and ".venv" not in path.parts}
    named = set(re.findall(r"(?<![\w./-])([a-z_][a-z0-9_-]*)/", _layout_block()))
    assert not named - folders, f"README's Layout section names folders that do not exist: {sorted(named - folders)}"
