"""Write minimal GGUF files (header and metadata only) to test the metadata reader."""

from __future__ import annotations

import struct
from pathlib import Path

MetadataValue = bool | int | float | str | list[str] | list[int]


def encode_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(value: MetadataValue) -> bytes:
    """A value's type id and bytes: bools as bool, ints as u32, floats as f32, strings, arrays of u32 or strings."""
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + encode_string(value)
    if all(isinstance(item, int) for item in value):
        return struct.pack("<IIQ", 9, 4, len(value)) + struct.pack(f"<{len(value)}I", *value)
    return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(encode_string(str(item)) for item in value)


def gguf_bytes(metadata: dict[str, MetadataValue], version: int = 3) -> bytes:
    """A GGUF file's bytes: the header and ``metadata``, no tensors."""
    body = b"".join(encode_string(key) + _value(value) for key, value in metadata.items())
    return b"GGUF" + struct.pack("<IQQ", version, 0, len(metadata)) + body


def write_gguf(path: Path, metadata: dict[str, MetadataValue]) -> Path:
    path.write_bytes(gguf_bytes(metadata))
    return path
