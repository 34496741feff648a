"""Re-export each loaded llama-server's own ``llamacpp:*`` metrics, labelled with its ``model`` - and, for a
model with several replicas, its ``replica`` (the index: bounded by ``replicas``), one series per process.

Children are scraped only while ``loaded`` with a live process: a scrape never wakes,
loads or waits for a model. A child that does not answer within :data:`SCRAPE_TIMEOUT_S`
is left out of this scrape (logged at debug) rather than delaying the router's own metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import Supervisor

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 1.0


#: The labels a child's samples get: its model's id, and its replica's index when the model has several.
ChildLabels = tuple[tuple[str, str], ...]


class ChildMetrics:
    """A Prometheus collector over the latest scrape of every loaded llamacpp child."""

    def __init__(self) -> None:
        self._scraped: dict[ChildLabels, list[Metric]] = {}

    def _targets(self, supervisor: Supervisor) -> dict[ChildLabels, Endpoint]:
        """Each loaded llamacpp child's endpoint (its base URL and the key only the router holds), by its labels."""
        targets: dict[ChildLabels, Endpoint] = {}
        for model_id in supervisor.model_ids:
            status = supervisor.status(model_id)
            if status.runtime != "llamacpp":
                continue
            for index, endpoint in supervisor.endpoints(model_id).items():
                replica = (("replica", str(index)),) if len(status.replicas) > 1 else ()
                targets[(("model", model_id), *replica)] = endpoint
        return targets

    async def scrape(self, supervisor: Supervisor) -> None:
        targets = self._targets(supervisor)
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client:
            texts = await asyncio.gather(*(self._fetch(client, endpoint) for endpoint in targets.values()))
        self._scraped = {}
        for labels, text in zip(targets, texts, strict=True):
            if text is None:
                continue
            with contextlib.suppress(ValueError):  # a malformed exposition is skipped, not fatal
                self._scraped[labels] = list(text_string_to_metric_families(text))

    @staticmethod
    async def _fetch(client: httpx.AsyncClient, endpoint: Endpoint) -> str | None:
        url = endpoint.base_url + "/metrics"
        try:
            response = await client.get(url, headers=dict(endpoint.headers))
        except httpx.HTTPError as error:
            logger.debug("scraping %s failed: %s", url, error)
            return None
        return response.text if response.status_code == 200 else None

    def collect(self) -> Iterator[Metric]:
        """One family per metric name across all children, each sample labelled with its model (and replica)."""
        merged: dict[str, Metric] = {}
        for labels, families in self._scraped.items():
            for family in families:
                if not family.name.startswith("llamacpp:"):
                    continue
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, **dict(labels)}, sample.value)
        yield from merged.values()
