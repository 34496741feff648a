"""The GGUF header reader: metadata values, the declared pooling type, and the files it refuses."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from inference_service.runtimes.gguf import GGUFError, declared_pooling, read_metadata
from tests.support.gguf import encode_string, gguf_bytes, write_gguf


def test_scalars_and_strings_are_read_after_skipped_arrays(tmp_path: Path) -> None:
    metadata = {
        "tokenizer.ggml.tokens": ["a", "bb", "ccc"],
        "tokenizer.ggml.token_type": [1, 1, 3],
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.rope.freq_base": 10000.0,
        "tokenizer.ggml.add_bos_token": True,
    }
    assert read_metadata(write_gguf(tmp_path / "m.gguf", metadata)) == {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.rope.freq_base": 10000.0,
        "tokenizer.ggml.add_bos_token": True,
    }


def test_pooling_is_found_after_string_arrays_and_strings(tmp_path: Path) -> None:
    metadata = {"general.architecture": "bert", "tokenizer.ggml.tokens": ["a", "bb", "ccc"], "bert.pooling_type": 2}
    assert declared_pooling(write_gguf(tmp_path / "m.gguf", metadata)) == "cls"


def test_declared_none_and_missing_both_mean_no_pooling(tmp_path: Path) -> None:
    assert declared_pooling(write_gguf(tmp_path / "none.gguf", {"llama.pooling_type": 0})) is None
    assert declared_pooling(write_gguf(tmp_path / "missing.gguf", {"general.architecture": "llama"})) is None


@pytest.mark.parametrize("content", [b"", b"GGU", b"NOPE" + bytes(20), b"PK\x03\x04 a zip archive"])
def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.gguf").write_bytes(content)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_metadata(tmp_path / "x.gguf")


def test_gguf_version_1_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v1.gguf").write_bytes(gguf_bytes({"general.architecture": "llama"}, version=1))
    with pytest.raises(GGUFError, match="unsupported GGUF version 1"):
        read_metadata(tmp_path / "v1.gguf")


@pytest.mark.parametrize("cut", [10, 30, -3])  # inside the counts, inside the first key, inside the last value
def test_a_truncated_file_is_refused(tmp_path: Path, cut: int) -> None:
    whole = gguf_bytes({"general.architecture": "llama", "tokenizer.ggml.tokens": ["a", "bb"], "llama.block_count": 3})
    (tmp_path / "cut.gguf").write_bytes(whole[:cut])
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(tmp_path / "cut.gguf")


@pytest.mark.parametrize(
    "entry",
    [
        struct.pack("<Q", 2**62) + b"key",  # a key whose length claims 4 EiB
        encode_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQQ", 9, 8, 2, 2**62),  # a vocabulary entry claiming 4 EiB
        encode_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 2**40),  # 4 TiB of floats in a small file
    ],
)
def test_a_corrupt_length_is_refused_without_reading_past_the_file(tmp_path: Path, entry: bytes) -> None:
    (tmp_path / "corrupt.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry)
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(tmp_path / "corrupt.gguf")


def test_an_unknown_value_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "odd.gguf").write_bytes(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + encode_string("x") + struct.pack("<I", 13)
    )
    with pytest.raises(GGUFError, match="unknown GGUF value type 13"):
        read_metadata(tmp_path / "odd.gguf")


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "absent.gguf")
