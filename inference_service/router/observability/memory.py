"""Each llamacpp child's resident memory held against its estimate (every replica's process on its own).

The capacity scheduler trusts the estimate (weights + KV cache + ``cache_ram_mb`` + a fixed
overhead: ``supervisor/footprint.py``, measured before the model's first load). A child that
grows past it - a prompt cache nobody bounded, a leak, a runtime option the estimate does
not know - breaks ``memory_budget_mb`` silently. So every :data:`WATCH_INTERVAL_S` the watch
compares each child's RSS with its estimate and, when the RSS exceeds it by more than
:func:`margin_mb`, publishes one ``memory_warning`` event and logs a warning: once per
process, so a child that stays too big is not reported every few seconds.
"""

from __future__ import annotations

import asyncio
import logging

from inference_service.events import MEMORY_WARNING
from inference_service.supervisor import ReplicaStatus, Supervisor

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 5.0
#: Over its estimate by more than this, a child is reported: the larger of a fixed allowance (allocator
#: slack, thread stacks) and a fraction of the estimate (compute buffers grow with the model).
MARGIN_MIN_MB, MARGIN_FRACTION = 64, 0.10


def margin_mb(estimate: int) -> int:
    return max(MARGIN_MIN_MB, int(estimate * MARGIN_FRACTION))


class MemoryWatch:
    """The periodic check of every llamacpp child's RSS against its estimate: each replica's process on its own."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._warned: dict[tuple[str, int], int] = {}  # (model id, replica index) -> the pid already reported

    async def run(self) -> None:
        """Check every :data:`WATCH_INTERVAL_S` until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(WATCH_INTERVAL_S)

    def check(self) -> None:
        for model_id in self._supervisor.model_ids:
            status = self._supervisor.status(model_id)
            if status.runtime != "llamacpp":
                continue
            for replica in status.replicas:
                tag = {"replica": replica.index} if len(status.replicas) > 1 else {}
                self._check(model_id, replica, tag)

    def _check(self, model_id: str, replica: ReplicaStatus, tag: dict[str, int]) -> None:
        estimate, pid, rss_mb = replica.footprint_mb, replica.pid, replica.rss_mb
        if not estimate or pid is None or rss_mb is None:
            return
        over = rss_mb - estimate
        if over <= margin_mb(estimate) or self._warned.get((model_id, replica.index)) == pid:
            return
        self._warned[(model_id, replica.index)] = pid
        name = f"{model_id}#{replica.index}" if tag else model_id
        logger.warning(
            "model %s: llama-server pid %d uses %.0f MiB, %.0f MiB over its estimate of %d MiB",
            name,
            pid,
            rss_mb,
            over,
            estimate,
        )
        self._supervisor.events.publish(
            MEMORY_WARNING, model_id, **tag, pid=pid, rss_mb=rss_mb, estimate_mb=estimate, margin_mb=margin_mb(estimate)
        )
