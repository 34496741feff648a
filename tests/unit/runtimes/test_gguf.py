"""Reading the pooling type a GGUF file declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.runtimes.gguf import GGUFError, declared_pooling
from tests.support.gguf import write_gguf


def test_pooling_is_found_after_string_arrays_and_strings(tmp_path: Path) -> None:
    metadata = {"general.architecture": "bert", "tokenizer.ggml.tokens": ["a", "bb", "ccc"], "bert.pooling_type": 2}
    assert declared_pooling(write_gguf(tmp_path / "m.gguf", metadata)) == "cls"


def test_declared_none_and_missing_both_mean_no_pooling(tmp_path: Path) -> None:
    assert declared_pooling(write_gguf(tmp_path / "none.gguf", {"llama.pooling_type": 0})) is None
    assert declared_pooling(write_gguf(tmp_path / "missing.gguf", {"general.architecture": "llama"})) is None


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(GGUFError):
        declared_pooling(tmp_path / "x.gguf")


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "m.gguf", {"general.architecture": "llama"}).read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:30])  # inside the first key
    with pytest.raises(GGUFError):
        declared_pooling(tmp_path / "cut.gguf")
