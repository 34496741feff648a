"""What ``/api/tags``, ``/api/ps`` and ``/api/show`` say about the configured models.

Ollama names every model ``name:tag``: a model id without a tag is listed as ``<id>:latest``
(and ``<id>`` and ``<id>:latest`` both resolve, see :func:`resolve`). The ``details`` of a
llama.cpp model come from its GGUF header (architecture, size label, quantization), read
once per file version in a thread; other runtimes' models have none to show.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference_service.router.api.models import expires_at
from inference_service.router.proxy.schemas import TaskType
from inference_service.router.services import Services
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.runtimes.gguf import GGUFError, read_metadata
from inference_service.runtimes.ollama import canonical_name
from inference_service.supervisor import ModelState

#: llama.cpp's ``enum llama_ftype`` (include/llama.h), the ``general.file_type`` of a GGUF file:
#: the names in enum order from 0, "-" for the values llama.cpp retired.
_FILE_TYPE_NAMES = (
    "F32 F16 Q4_0 Q4_1 - - - Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ2_XXS "
    "IQ2_XS Q2_K_S IQ3_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ3_M IQ2_S IQ2_M IQ4_XS IQ1_M BF16 - - - TQ1_0 TQ2_0 MXFP4_MOE"
)
FILE_TYPES = {number: name for number, name in enumerate(_FILE_TYPE_NAMES.split()) if name != "-"}
#: The ``expires_at`` of a model kept loaded for ever (Ollama's ``keep_alive: -1``).
NEVER = "9999-12-31T23:59:59Z"
_LATEST = ":latest"


@dataclass(frozen=True)
class FileFacts:
    """A GGUF file as Ollama describes a model: its size, a digest, its header's metadata."""

    size: int
    modified: float
    digest: str
    metadata: Mapping[str, object] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def _read_facts(path: Path, size: int, mtime_ns: int) -> FileFacts:
    """Keyed by size and mtime, so a replaced file is read again. The digest names the file's
    version (path, size, time), not its content: hashing gigabytes per listing is not worth it."""
    try:
        metadata: Mapping[str, object] = read_metadata(path)
    except (GGUFError, OSError):
        metadata = {}
    digest = hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    return FileFacts(size, mtime_ns / 1e9, digest, metadata)


def _facts_of(path: Path) -> FileFacts | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_facts(path, stat.st_size, stat.st_mtime_ns)


async def file_facts(svc: Services, model_id: str) -> FileFacts | None:
    """The model's GGUF facts; None for a model with no local file (Ollama, remote) or a missing one."""
    config = svc.settings.models[model_id]
    if config.path is None:
        return None
    return await asyncio.to_thread(_facts_of, svc.settings.model_path(config))


def resolve(svc: Services, name: str, task_type: TaskType = TaskType.GENERAL) -> str:
    """The model id an Ollama name means: an id or alias, with or without ``:latest``; 404 otherwise,
    403 when the request's key may not use it."""
    try:
        return svc.resolver.usable(name, task_type)
    except APIError as error:
        if error.status != 404 or not name.endswith(_LATEST):
            raise
        return svc.resolver.usable(name.removesuffix(_LATEST), task_type)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def details(facts: FileFacts | None) -> dict[str, Any]:
    metadata = facts.metadata if facts else {}
    family = str(metadata.get("general.architecture") or "")
    file_type = metadata.get("general.file_type")
    return {
        "parent_model": "",
        "format": "gguf" if facts else "",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": str(metadata.get("general.size_label") or ""),
        "quantization_level": FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
    }


def _entry(svc: Services, model_id: str, name: str, facts: FileFacts | None) -> dict[str, Any]:
    """A model as ``/api/tags`` lists it; one without a file is dated by its last change of state."""
    runtime = svc.settings.models[model_id].runtime
    return {
        "name": name,
        "model": name,
        "modified_at": _timestamp(facts.modified if facts else svc.supervisor.status(model_id).state_since),
        "size": facts.size if facts else 0,
        "digest": facts.digest if facts else hashlib.sha256(f"{runtime}:{model_id}".encode()).hexdigest(),
        "details": details(facts),
    }


def _names(svc: Services, model_id: str) -> list[str]:
    """The names a model is listed under: its id; its aliases too with ``list_aliases`` (as /v1/models)."""
    aliases = svc.settings.models[model_id].aliases if svc.settings.list_aliases else []
    return [canonical_name(name) for name in (model_id, *aliases)]


async def tags(svc: Services) -> dict[str, Any]:
    """``GET /api/tags``: every configured model the key may use, loaded or not."""
    tenant = keys.current()
    model_ids = [
        model_id
        for model_id in svc.supervisor.model_ids
        if model_id in svc.settings.models and tenant.may_use(model_id)
    ]
    facts = await asyncio.gather(*(file_facts(svc, model_id) for model_id in model_ids))
    return {
        "models": [
            _entry(svc, model_id, name, model_facts)
            for model_id, model_facts in zip(model_ids, facts, strict=True)
            for name in _names(svc, model_id)
        ]
    }


async def running(svc: Services) -> dict[str, Any]:
    """``GET /api/ps``: the loaded models the key may use, with when their idle TTL unloads them."""
    models = []
    for model_id in filter(keys.current().may_use, svc.supervisor.model_ids):
        status = svc.supervisor.status(model_id)
        if status.state != ModelState.LOADED or model_id not in svc.settings.models:
            continue
        facts = await file_facts(svc, model_id)
        entry = _entry(svc, model_id, canonical_name(model_id), facts)
        expires = expires_at(status)
        entry["expires_at"] = (
            NEVER if status.idle_ttl_s is None else _timestamp(expires if expires is not None else status.state_since)
        )
        entry["size"] = (status.footprint_mb or 0) * 2**20 or entry["size"]
        entry["size_vram"] = 0
        entry["context_length"] = svc.settings.models[model_id].ctx_size
        models.append(entry)
    return {"models": models}


def _capabilities(svc: Services, model_id: str, metadata: Mapping[str, object]) -> list[str]:
    """Ollama's capability names, from what the model serves and what its chat template handles."""
    config = svc.settings.models[model_id]
    served = config.served_capabilities
    template = str(metadata.get("tokenizer.chat_template") or "")
    capabilities = ["completion"] if {"chat", "completion"} & set(served) else []
    if "embeddings" in served:
        capabilities.append("embedding")
    if "chat" in served and "tools" in template:
        capabilities.append("tools")
    if "chat" in served and ("enable_thinking" in template or "<think>" in template):
        capabilities.append("thinking")
    if config.runtime == "llamacpp" and "tokenizer.ggml.fim_pre_token_id" in metadata:
        capabilities.append("insert")
    return capabilities


async def show(svc: Services, model_id: str) -> dict[str, Any]:
    """``POST /api/show``: the model's details, header metadata, chat template and capabilities."""
    config = svc.settings.models[model_id]
    facts = await file_facts(svc, model_id)
    metadata = facts.metadata if facts else {}
    source = svc.settings.model_path(config) if config.path else f"{config.runtime}:{config.model_name_upstream}"
    return {
        "modelfile": f"# served by inference-service as {model_id!r} ({config.runtime} runtime)\nFROM {source}\n",
        "parameters": f"num_ctx {config.ctx_size}" if config.runtime == "llamacpp" else "",
        "template": str(metadata.get("tokenizer.chat_template") or ""),
        "license": str(metadata.get("general.license") or ""),
        "details": details(facts),
        "model_info": {key: value for key, value in metadata.items() if key != "tokenizer.chat_template"},
        "capabilities": _capabilities(svc, model_id, metadata),
        "modified_at": _entry(svc, model_id, model_id, facts)["modified_at"],
    }
