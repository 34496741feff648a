"""Write minimal GGUF files (header and metadata only) to test the metadata reader."""

from __future__ import annotations

import struct
from pathlib import Path


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, metadata: dict[str, int | str | list[str]]) -> Path:
    """A GGUF v3 file with ``metadata``: ints as u32, strings, and arrays of strings."""
    body = b""
    for key, value in metadata.items():
        body += _string(key)
        if isinstance(value, int):
            body += struct.pack("<II", 4, value)
        elif isinstance(value, str):
            body += struct.pack("<I", 8) + _string(value)
        else:
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(item) for item in value)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body)
    return path
