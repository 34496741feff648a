"""Estimate a model's memory before loading it: the GGUF weights plus the KV cache.

Only the GGUF header is read (a few hundred KB at most), with a small reader for the
documented format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) instead of
the ``gguf`` package, which would pull numpy into the service for six integers.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KV_BYTES_PER_ELEMENT = 2  # llama-server's default f16 KV cache
_OVERHEAD_MB = 64  # compute buffers and the server itself, measured ~50-70 MB on CPU
_MAX_STRING_BYTES = 64 * 2**20  # real header strings (chat templates, vocab entries) are KBs


class GGUFError(ValueError):
    pass


def _read(handle: BinaryIO, fmt: str) -> int | float | bool:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    value: int | float | bool = struct.unpack(fmt, data)[0]
    return value


def _read_string(handle: BinaryIO) -> str:
    length = int(_read(handle, "<Q"))
    if length > _MAX_STRING_BYTES:  # a corrupt length must not become a multi-GB allocation
        raise GGUFError(f"implausible GGUF string length {length}")
    data = handle.read(length)
    if len(data) != length:
        raise GGUFError("truncated GGUF header")
    return data.decode(errors="replace")


def _read_value(handle: BinaryIO, value_type: int) -> object:
    if value_type in _SCALARS:
        return _read(handle, _SCALARS[value_type])
    if value_type == _STRING:
        return _read_string(handle)
    if value_type == _ARRAY:
        item_type, count = int(_read(handle, "<I")), int(_read(handle, "<Q"))
        if item_type in _SCALARS:  # skip numeric arrays without decoding them
            handle.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
        else:
            for _ in range(count):
                _read_value(handle, item_type)
        return None
    raise GGUFError(f"unknown GGUF value type {value_type}")


def read_metadata(path: Path) -> dict[str, object]:
    """All scalar and string metadata of a GGUF file (arrays are skipped)."""
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(handle, "<I")
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        _read(handle, "<Q")  # tensor count
        metadata: dict[str, object] = {}
        for _ in range(int(_read(handle, "<Q"))):
            key = _read_string(handle)
            metadata[key] = _read_value(handle, int(_read(handle, "<I")))
        return metadata


def kv_cache_bytes(metadata: dict[str, object], ctx_size: int) -> int:
    arch = str(metadata.get("general.architecture", "llama"))

    def field(name: str, default: int = 0) -> int:
        value = metadata.get(f"{arch}.{name}", default)
        return int(value) if isinstance(value, (int, float)) else default

    layers = field("block_count")
    heads = field("attention.head_count", 1) or 1
    kv_heads = field("attention.head_count_kv", heads) or heads
    head_dim = field("attention.key_length", field("embedding_length") // heads)
    value_dim = field("attention.value_length", head_dim)
    context = ctx_size or field("context_length")
    return layers * context * kv_heads * (head_dim + value_dim) * _KV_BYTES_PER_ELEMENT


def estimate_mb(path: Path, ctx_size: int) -> int:
    """Weights + KV cache + fixed overhead, in MiB. Unreadable headers count weights only."""
    weights = path.stat().st_size
    try:
        kv = kv_cache_bytes(read_metadata(path), ctx_size)
    except (GGUFError, OSError, UnicodeDecodeError):
        kv = 0
    return int((weights + kv) / 2**20) + _OVERHEAD_MB
