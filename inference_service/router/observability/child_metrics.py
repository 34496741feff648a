"""Re-export each loaded llama-server's own ``llamacpp:*`` metrics, labelled with its ``model``.

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


class ChildMetrics:
    """A Prometheus collector over the latest scrape of every loaded llamacpp child."""

    def __init__(self) -> None:
        self._scraped: dict[str, list[Metric]] = {}

    def _targets(self, supervisor: Supervisor) -> dict[str, Endpoint]:
        """Each loaded llamacpp child's endpoint: its base URL and the key only the router holds."""
        targets = {}
        for model_id in supervisor.model_ids:
            if (
                supervisor.status(model_id).runtime == "llamacpp"
                and (endpoint := supervisor.endpoint(model_id)) is not None
            ):
                targets[model_id] = endpoint
        return targets

    async def scrape(self, supervisor: Supervisor) -> None:
        targets = self._targets(supervisor)
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client:
            texts = await asyncio.gather(*(self._fetch(client, endpoint) for endpoint in targets.values()))
        self._scraped = {}
        for model_id, text in zip(targets, texts, strict=True):
            if text is None:
                continue
            with contextlib.suppress(ValueError):  # a malformed exposition is skipped, not fatal
                self._scraped[model_id] = list(text_string_to_metric_families(text))

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
        """One family per metric name across all children, each sample labelled with its model."""
        merged: dict[str, Metric] = {}
        for model_id, families in self._scraped.items():
            for family in families:
                if not family.name.startswith("llamacpp:"):
                    continue
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "model": model_id}, sample.value)
        yield from merged.values()
