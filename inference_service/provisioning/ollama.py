"""``models pull`` for an Ollama model: ask the Ollama server to pull it, showing its progress.

``POST /api/pull`` streams NDJSON (``docs/api.md``): ``{"status": ...}`` steps, and per
layer ``{"status", "digest", "total", "completed"}`` byte counts; a failure arrives as
``{"error": ...}`` in the stream (with HTTP 200) or as an error status up front.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from inference_service.config import ModelConfig, Settings
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.progress import Progress
from inference_service.runtimes.ollama import canonical_name, error_message


def _finish_layer(progress: Progress, layer: tuple[str, int, int]) -> None:
    """Draw a layer's last bar whatever the throttle: the final byte count must be seen."""
    label, completed, total = layer
    progress.update(label, completed, total, force=True)


def _show(event: dict[str, Any], progress: Progress, state: dict[str, Any]) -> None:
    """Render one progress event: byte counts as a bar per layer, anything else as a step line."""
    status = str(event.get("status", ""))
    digest = event.get("digest")
    if digest and event.get("total"):
        label = f"pulling {str(digest).removeprefix('sha256:')[:12]}"
        previous = state.get("layer")
        if previous is not None and previous[0] != label:
            _finish_layer(progress, previous)
        completed = int(event.get("completed") or 0)
        state["layer"] = (label, completed, int(event["total"]))
        progress.update(label, completed, int(event["total"]))
        return
    if (layer := state.pop("layer", None)) is not None:
        _finish_layer(progress, layer)
    if status and status != state.get("status"):
        progress.step(status)
    state["status"] = status


def pull_ollama_model(settings: Settings, model: ModelConfig, progress: Progress) -> str:
    """Have the configured Ollama server pull the model; return ``name@url`` once it reports success."""
    url = settings.runtimes.ollama.url.rstrip("/")
    name = canonical_name(model.model_name_upstream)
    progress.step(f"{model.id}: pulling {name} on the Ollama at {url}")
    state: dict[str, Any] = {}
    try:
        with httpx.stream(
            "POST", f"{url}/api/pull", json={"model": name}, timeout=httpx.Timeout(60.0, read=None)
        ) as response:
            if response.status_code != 200:
                response.read()
                raise ProvisioningError(f"ollama pull {name}: HTTP {response.status_code}: {error_message(response)}")
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise ProvisioningError(f"ollama pull {name}: unexpected line from {url}: {line[:200]}") from None
                if "error" in event:
                    raise ProvisioningError(f"ollama pull {name}: {event['error']}")
                _show(event, progress, state)
    except httpx.HTTPError as error:
        raise ProvisioningError(
            f"cannot reach Ollama at {url} (runtimes.ollama.url) to pull {name}: {error.__class__.__name__}: {error}; "
            "is `ollama serve` running?"
        ) from None
    if state.get("status") != "success":
        raise ProvisioningError(
            f"ollama pull {name}: the stream ended without 'success' (last: {state.get('status')!r})"
        )
    progress.step(f"{model.id}: {name} ready on {url}")
    return f"{name}@{url}"
