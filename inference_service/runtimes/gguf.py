"""Just enough of the GGUF header to read one metadata value: the pooling type a model declares.

``llama-server --embeddings`` pools with the model's declared type; a chat model declares
none, and llama-server then refuses OpenAI-style ``/v1/embeddings``. Knowing the declared
type lets the runtime pass ``--pooling mean`` only when the file leaves it open, without
overriding an embedding model's own (``cls`` for BERT-like models, ``last`` for others).

Format (github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic ``GGUF``, version u32,
tensor count u64, metadata count u64, then key/value pairs, all little-endian.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

#: llama.cpp's ``enum llama_pooling_type`` values as written in GGUF files.
POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}

_STRING, _ARRAY = 8, 9
#: Byte size of each fixed-size GGUF value type.
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTEGER_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


class GGUFError(Exception):
    """The file is not a GGUF file this reader understands."""


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return data


def _u32(handle: BinaryIO) -> int:
    return int(struct.unpack("<I", _read(handle, 4))[0])


def _u64(handle: BinaryIO) -> int:
    return int(struct.unpack("<Q", _read(handle, 8))[0])


def _string(handle: BinaryIO) -> str:
    return _read(handle, _u64(handle)).decode("utf-8", errors="replace")


def _skip(handle: BinaryIO, value_type: int) -> None:
    """Move past one value of ``value_type`` without decoding it."""
    if value_type == _STRING:
        handle.seek(_u64(handle), 1)
    elif value_type == _ARRAY:
        element_type, count = _u32(handle), _u64(handle)
        if element_type in _FIXED_SIZES:
            handle.seek(_FIXED_SIZES[element_type] * count, 1)
        else:
            for _ in range(count):
                _skip(handle, element_type)
    elif value_type in _FIXED_SIZES:
        handle.seek(_FIXED_SIZES[value_type], 1)
    else:
        raise GGUFError(f"unknown GGUF value type {value_type}")


def declared_pooling(path: Path) -> str | None:
    """The pooling type the file declares (``<arch>.pooling_type``), or None if it declares none."""
    with path.open("rb") as handle:
        if _read(handle, 4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        if _u32(handle) < 2:
            raise GGUFError(f"{path}: GGUF version 1 is not supported")
        _u64(handle)  # tensor count
        for _ in range(_u64(handle)):
            key, value_type = _string(handle), _u32(handle)
            if key.endswith(".pooling_type") and value_type in _INTEGER_FORMATS:
                fmt = _INTEGER_FORMATS[value_type]
                value = struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]
                pooling = POOLING_TYPES.get(int(value))
                return None if pooling in (None, "none") else pooling
            _skip(handle, value_type)
    return None
