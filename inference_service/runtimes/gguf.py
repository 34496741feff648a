"""The GGUF header reader: a model file's metadata, without the ``gguf`` package.

Two readers of the header need it: the runtime (the pooling type an embeddings model
declares) and the supervisor's memory estimate (layers, heads, context). The ``gguf``
package would pull numpy into the service for a handful of integers, so this reads the
documented format itself (github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic
``GGUF``, version u32, tensor count u64, metadata count u64, then key/value pairs, all
little-endian.

The file is memory-mapped and arrays are skipped, not decoded: a 256k-entry vocabulary
costs milliseconds, where one ``read()`` per string took a second. Still, a header is file
parsing: call :func:`read_metadata` from a worker thread, never on the event loop.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

#: llama.cpp's ``enum llama_pooling_type`` values as written in GGUF files.
POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}

_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
#: The fixed-size GGUF value types: u8, i8, u16, i16, u32, i32, f32, bool, u64, i64, f64.
_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_SCALARS = {value_type: struct.Struct(fmt) for value_type, fmt in _FORMATS.items()}

Scalar = int | float | bool | str


class GGUFError(Exception):
    """The file is not a GGUF file this reader understands: another format, version 1, cut short or corrupt."""


class _Cursor:
    """Reads little-endian values from a memory-mapped file, checking every read against its end."""

    def __init__(self, data: mmap.mmap) -> None:
        self._data = data
        self.offset = 0

    def scalar(self, value_type: int) -> int | float | bool:
        layout = _SCALARS[value_type]
        self._require(layout.size)
        value: int | float | bool = layout.unpack_from(self._data, self.offset)[0]
        self.offset += layout.size
        return value

    def count(self) -> int:
        return int(self.scalar(10))

    def string(self) -> str:
        size = self.count()
        self._require(size)  # a corrupt length fails here, before anything is sliced
        start, self.offset = self.offset, self.offset + size
        return self._data[start : self.offset].decode("utf-8", errors="replace")

    def value(self, value_type: int) -> Scalar | None:
        """One metadata value; an array is skipped (None)."""
        if value_type in _SCALARS:
            return self.scalar(value_type)
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            self._skip_array()
            return None
        raise GGUFError(f"unknown GGUF value type {value_type}")

    def _skip_array(self) -> None:
        element_type, count = int(self.scalar(4)), self.count()
        if element_type in _SCALARS:
            self._require(_SCALARS[element_type].size * count)
            self.offset += _SCALARS[element_type].size * count
        elif element_type == _STRING:  # a vocabulary: the hot loop, kept minimal
            offset, data, length = self.offset, self._data, _U64.unpack_from
            try:
                for _ in range(count):
                    offset += 8 + length(data, offset)[0]
            except struct.error:
                raise GGUFError("truncated GGUF header") from None
            self.offset = offset
            self._require(0)
        else:
            for _ in range(count):
                self.value(element_type)

    def _require(self, size: int) -> None:
        if self.offset + size > len(self._data):
            raise GGUFError("truncated GGUF header")


def read_metadata(path: Path) -> dict[str, Scalar]:
    """Every scalar and string metadata value of a GGUF file, by key (arrays - vocabularies, merges - are skipped).

    Raises :class:`GGUFError` for a file this reader does not understand, ``OSError`` for one it cannot open.
    """
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size < 4:  # mmap refuses an empty file; a 3-byte one is no GGUF either
            raise GGUFError(f"{path} is not a GGUF file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:4] != b"GGUF":
                raise GGUFError(f"{path} is not a GGUF file")
            cursor = _Cursor(data)
            cursor.offset = 4
            if (version := cursor.scalar(4)) not in (2, 3):
                raise GGUFError(f"{path}: unsupported GGUF version {version}")
            cursor.count()  # tensor count
            metadata: dict[str, Scalar] = {}
            for _ in range(cursor.count()):
                key = cursor.string()
                value = cursor.value(int(cursor.scalar(4)))
                if value is not None:
                    metadata[key] = value
            return metadata


def declared_pooling(path: Path) -> str | None:
    """The pooling type the file declares (``<arch>.pooling_type``), or None if it declares none.

    ``llama-server --embeddings`` pools with the model's declared type; a chat model declares
    none, and llama-server then refuses OpenAI-style ``/v1/embeddings``. Knowing the declared
    type lets the runtime pass ``--pooling mean`` only when the file leaves it open, without
    overriding an embedding model's own (``cls`` for BERT-like models, ``last`` for others).
    """
    for key, value in read_metadata(path).items():
        if key.endswith(".pooling_type") and isinstance(value, int):
            pooling = POOLING_TYPES.get(value)
            return None if pooling in (None, "none") else pooling
    return None
