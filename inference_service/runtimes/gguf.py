"""Just enough of the GGUF header to read one metadata value: the pooling type a model declares.

``llama-server --embeddings`` pools with the model's declared type; a chat model declares
none, and llama-server then refuses OpenAI-style ``/v1/embeddings``. Knowing the declared
type lets the runtime pass ``--pooling mean`` only when the file leaves it open, without
overriding an embedding model's own (``cls`` for BERT-like models, ``last`` for others).

Format (github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic ``GGUF``, version u32,
tensor count u64, metadata count u64, then key/value pairs, all little-endian.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

#: llama.cpp's ``enum llama_pooling_type`` values as written in GGUF files.
POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}

_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
#: Byte size of each fixed-size GGUF value type.
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTEGER_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


class GGUFError(Exception):
    """The file is not a GGUF file this reader understands."""


class _Cursor:
    """Reads little-endian values from a memory-mapped file: skipping a 256k-entry vocabulary
    this way takes milliseconds, where file reads took a second."""

    def __init__(self, data: mmap.mmap) -> None:
        self._data = data
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self._data):
            raise GGUFError("truncated GGUF header")
        (value,) = struct.unpack_from(fmt, self._data, self.offset)
        self.offset += size
        return int(value)

    def skip(self, size: int) -> None:
        self.offset += size
        if self.offset > len(self._data):
            raise GGUFError("truncated GGUF header")

    def string(self) -> str:
        size = self.unpack("<Q")
        start = self.offset
        self.skip(size)
        return self._data[start : self.offset].decode("utf-8", errors="replace")

    def skip_value(self, value_type: int) -> None:
        if value_type == _STRING:
            self.skip(self.unpack("<Q"))
        elif value_type == _ARRAY:
            element_type, count = self.unpack("<I"), self.unpack("<Q")
            if element_type in _FIXED_SIZES:
                self.skip(_FIXED_SIZES[element_type] * count)
            elif element_type == _STRING:  # a vocabulary: the hot loop, kept minimal
                offset, data, length = self.offset, self._data, _U64.unpack_from
                try:
                    for _ in range(count):
                        offset += 8 + length(data, offset)[0]
                except struct.error:
                    raise GGUFError("truncated GGUF header") from None
                self.offset = offset
                self.skip(0)
            else:
                for _ in range(count):
                    self.skip_value(element_type)
        elif value_type in _FIXED_SIZES:
            self.skip(_FIXED_SIZES[value_type])
        else:
            raise GGUFError(f"unknown GGUF value type {value_type}")


def declared_pooling(path: Path) -> str | None:
    """The pooling type the file declares (``<arch>.pooling_type``), or None if it declares none."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cursor = _Cursor(data)
        if data[:4] != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        cursor.skip(4)
        if cursor.unpack("<I") < 2:
            raise GGUFError(f"{path}: GGUF version 1 is not supported")
        cursor.unpack("<Q")  # tensor count
        for _ in range(cursor.unpack("<Q")):
            key, value_type = cursor.string(), cursor.unpack("<I")
            if key.endswith(".pooling_type") and value_type in _INTEGER_FORMATS:
                pooling = POOLING_TYPES.get(cursor.unpack(_INTEGER_FORMATS[value_type]))
                return None if pooling in (None, "none") else pooling
            cursor.skip_value(value_type)
    return None
