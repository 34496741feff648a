"""A real router with a remote route to its own SmolLM2 llama-server through a wiretap.

What the router sends upstream is only visible on the wire (tests/support/wiretap.py); the
acceptance tests of the router and of its tracing both want such a route, beside the models
of their own config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, wait_until, write_config
from tests.support.service import ServiceProcess, running_service
from tests.support.wiretap import Wiretap, wiretap


@contextmanager
def tapped_router(
    directory: Path,
    models: Mapping[str, Mapping[str, Any]],
    tapped_id: str,
    tapped_fields: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    **top_level: Any,
) -> Iterator[tuple[ServiceProcess, Wiretap]]:
    """A ready router of ``models`` (SmolLM2 among them, preloaded) plus ``tapped_id``, and the tap behind it.

    ``tapped_id`` is a remote route to SmolLM2's own llama-server (``tapped_fields`` add to it).
    The tap looks SmolLM2's child port up per connection (and its API key per request), so it
    survives a restart of that child. ``env`` and ``top_level`` configure the router.
    """
    started: list[ServiceProcess] = []
    with wiretap(
        lambda: int(model_card(started[0], SMOLLM2_ID)["port"]), lambda: child_headers(started[0], SMOLLM2_ID)
    ) as tap:
        tapped = {"runtime": "remote", "url": f"http://127.0.0.1:{tap.port}", "upstream_model": SMOLLM2_ID}
        config = write_config(
            directory / "config.toml",
            {**models, tapped_id: {**tapped, **(tapped_fields or {})}},
            default_model=SMOLLM2_ID,
            **top_level,
        )
        with running_service(config, directory / "logs", env=env, wait_ready=True) as service:
            started.append(service)
            # The router probes the remote route at start-up, before the tap can look the child up
            # (it needs this very service): that first probe fails, and the route recovers on its own.
            wait_until(lambda: model_card(service, tapped_id)["status"] == "loaded", timeout_s=60)
            yield service, tap
