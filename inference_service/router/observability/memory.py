"""Each llamacpp child's resident memory held against its estimate.

The capacity scheduler trusts the estimate (weights + KV cache + ``cache_ram_mb`` + a fixed
overhead: ``supervisor/footprint.py``). A child that grows past it - a prompt cache nobody
bounded, a leak, a runtime option the estimate does not know - breaks ``memory_budget_mb``
silently. So every :data:`WATCH_INTERVAL_S` the watch compares each child's RSS with its
estimate and, when the RSS exceeds it by more than :func:`margin_mb`, publishes one
``memory_warning`` event and logs a warning: once per process, so a child that stays too
big is not reported every few seconds.

The estimates are read from the GGUF headers in a thread (a large vocabulary takes a
second to skip) and kept per model config, so ``/v1/models`` and ``/metrics`` can show
each child's RSS next to its estimate without reading a file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from inference_service.config import ModelConfig, Settings
from inference_service.events import MEMORY_WARNING
from inference_service.supervisor import Supervisor
from inference_service.supervisor.footprint import estimate_mb

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 5.0
#: Over its estimate by more than this, a child is reported: the larger of a fixed allowance (allocator
#: slack, thread stacks) and a fraction of the estimate (compute buffers grow with the model).
MARGIN_MIN_MB, MARGIN_FRACTION = 64, 0.10


def margin_mb(estimate: int) -> int:
    return max(MARGIN_MIN_MB, int(estimate * MARGIN_FRACTION))


class MemoryWatch:
    """Estimates per model, and the periodic RSS check against them."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._estimates: dict[str, tuple[ModelConfig, int]] = {}  # model id -> (the config it is for, MiB)
        self._warned: dict[str, int] = {}  # model id -> pid already reported

    def estimate_mb(self, model_id: str) -> int | None:
        """The model's last computed estimate (None before the watch's first look at it)."""
        known = self._estimates.get(model_id)
        return known[1] if known else None

    async def run(self, settings: Callable[[], Settings]) -> None:
        """Check every :data:`WATCH_INTERVAL_S` until cancelled, with the settings in force (a reload changes them)."""
        while True:
            await self.check(settings())
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def check(self, settings: Settings) -> None:
        for model_id in self._supervisor.model_ids:
            model = settings.models.get(model_id)
            if model is None or model.runtime != "llamacpp":
                continue
            estimate = await self._estimate(settings, model)
            status = self._supervisor.status(model_id)
            process = status.process
            if estimate is None or process is None or process.rss_mb is None:
                continue
            over = process.rss_mb - estimate
            if over > margin_mb(estimate) and self._warned.get(model_id) != process.pid:
                self._warned[model_id] = process.pid
                logger.warning(
                    "model %s: llama-server pid %d uses %.0f MiB, %.0f MiB over its estimate of %d MiB",
                    model_id,
                    process.pid,
                    process.rss_mb,
                    over,
                    estimate,
                )
                self._supervisor.events.publish(
                    MEMORY_WARNING,
                    model_id,
                    pid=process.pid,
                    rss_mb=process.rss_mb,
                    estimate_mb=estimate,
                    margin_mb=margin_mb(estimate),
                )

    async def _estimate(self, settings: Settings, model: ModelConfig) -> int | None:
        known = self._estimates.get(model.id)
        if known is not None and known[0] == model:
            return known[1]
        path = settings.model_path(model)
        try:
            estimate = await asyncio.to_thread(estimate_mb, path, model.ctx_size, model.cache_ram_mb)
        except OSError:
            return None  # not pulled yet: nothing runs to compare with either
        self._estimates[model.id] = (model, estimate)
        return estimate
