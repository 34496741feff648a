"""Run a real LiteLLM proxy offline for a test, and always stop it.

Shared by ``tests/stack.py`` (the gateway in front of the suite's service) and the topology
tests (the gateway in front of two back routers). The proxy runs with the bundled model
cost map (no download at start-up) and a master key, which it refuses to start without.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.service import free_port, stop_tree, wait_for_http

LITELLM = Path(sys.executable).parent / "litellm"
GATEWAY_READY_TIMEOUT_S = 300.0  # ~10-15 s on an idle machine; over 120 s seen on an oversubscribed 2-core one
STOP_TIMEOUT_S = 15.0


@contextmanager
def running_litellm(config: Path, log_dir: Path, master_key: str, env: Mapping[str, str]) -> Iterator[str]:
    """Run ``litellm --config config`` on a free 127.0.0.1 port until the block exits; yields its URL.

    ``env`` carries what the config reads with ``os.environ/...`` (the upstreams' URLs and keys).
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"gateway-{port}.log"
    environment = {
        **os.environ,
        **env,
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled cost map: no download at start-up
    }
    argv = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        # cwd=log_dir: whatever LiteLLM writes next to itself stays out of the work tree.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment, cwd=log_dir
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health/liveliness", GATEWAY_READY_TIMEOUT_S, process)
        yield url
    except BaseException:
        sys.stderr.write(f"--- gateway log ({log_path}) ---\n{log_path.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        stop_tree(process, STOP_TIMEOUT_S)
