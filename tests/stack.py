"""``make test``: start the service and the LiteLLM gateway, run every test, always tear both down.

    .venv/bin/python -m tests.stack [extra pytest args]

1. starts ``inference-service serve`` with tests/integration/config.toml (port
   ``INFERENCE_SERVICE_PORT`` or a free one) and waits until ``/health/ready``;
2. starts the LiteLLM proxy with deploy/litellm/config.yaml on a free port, offline, and
   waits for ``/health/liveliness``;
3. exports ``INFERENCE_SERVICE_URL`` / ``LLM_GATEWAY_URL`` and runs ``pytest tests/unit``, then
   ``pytest tests/integration`` (subfolders included) with ``INTEGRATION_REQUIRED=1``, so a
   test that would skip for want of the stack fails instead (tests/conftest.py turns every
   skip into a failure), and a run that collects no tests fails too;
4. stops the gateway and the service (and their children) whatever happened - failure,
   Ctrl-C or SIGTERM - and exits non-zero if anything failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tests.integration.conftest import GATEWAY_MASTER_KEY
from tests.support.cpu_share import share_the_cpu
from tests.support.gateway import running_litellm
from tests.support.service import REPO_ROOT, running_service

SERVICE_CONFIG = REPO_ROOT / "tests" / "integration" / "config.toml"
GATEWAY_CONFIG = REPO_ROOT / "deploy" / "litellm" / "config.yaml"
SERVICE_READY_TIMEOUT_S = 180.0
PYTEST_NO_TESTS = 5  # pytest's exit code when nothing was collected


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@contextmanager
def running_gateway(service_url: str, log_dir: Path) -> Iterator[str]:
    """Run the LiteLLM proxy against ``service_url`` until the block exits; yields its URL."""
    env = {
        "INFERENCE_SERVICE_API_BASE": f"{service_url}/v1",
        "INFERENCE_SERVICE_API_KEY": "no-key-needed",  # the test config sets no api_key; LiteLLM needs some key
    }
    with running_litellm(GATEWAY_CONFIG, log_dir, GATEWAY_MASTER_KEY, env) as url:
        yield url


def run_pytest(label: str, paths: Sequence[str], env: Mapping[str, str], extra_args: Sequence[str]) -> bool:
    """One pytest run in a child process; True only when it passed. Nothing collected is a failure:
    a path that silently lost its tests (an import-time ``collect_ignore``, a moved folder) must not
    look green."""
    say(f"{label}: pytest {' '.join(paths)}")
    started = time.monotonic()
    code = subprocess.call(
        [sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider", *extra_args], env=dict(env), cwd=REPO_ROOT
    )
    elapsed = time.monotonic() - started
    if code == PYTEST_NO_TESTS:
        say(f"{label}: FAILED: no tests collected ({elapsed:.0f}s)")
        return False
    say(f"{label}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {elapsed:.0f}s")
    return code == 0


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (CI cancelling the job) unwinds like Ctrl-C, so every ``finally`` tears down."""
    raise KeyboardInterrupt


def main(extra_args: Sequence[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    share_the_cpu()  # the stack's service and every test's llama-server inherit it
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="inference-stack-"))
    port = int(os.environ["INFERENCE_SERVICE_PORT"]) if os.environ.get("INFERENCE_SERVICE_PORT") else None
    say(f"logs in {log_dir}")
    results: dict[str, bool] = {}
    try:
        say(f"starting inference-service ({SERVICE_CONFIG.relative_to(REPO_ROOT)}), waiting for /health/ready ...")
        with running_service(
            SERVICE_CONFIG,
            log_dir,
            port=port,
            env={"INFERENCE_KV_CACHE_DIR": str(log_dir / "kv")},  # this stack's saved slots are its own
            ready_timeout_s=SERVICE_READY_TIMEOUT_S,
            wait_ready=True,
        ) as service:
            say(f"inference-service ready at {service.url} (pid {service.pid}) after {time.monotonic() - started:.0f}s")
            say(
                f"starting LiteLLM gateway ({GATEWAY_CONFIG.relative_to(REPO_ROOT)}), waiting for /health/liveliness ..."
            )
            with running_gateway(service.url, log_dir) as gateway_url:
                say(f"gateway ready at {gateway_url} after {time.monotonic() - started:.0f}s")
                env = {
                    **os.environ,
                    "INFERENCE_SERVICE_URL": service.url,
                    "LLM_GATEWAY_URL": gateway_url,
                    "LITELLM_MASTER_KEY": GATEWAY_MASTER_KEY,
                    "INTEGRATION_REQUIRED": "1",
                }
                results["unit"] = run_pytest("unit", ["tests/unit"], env, extra_args)
                results["integration"] = run_pytest("integration", ["tests/integration"], env, extra_args)
                say("stopping the gateway and the service ...")
    except KeyboardInterrupt:
        say("interrupted: the gateway and the service were stopped")
        return 130
    except (RuntimeError, TimeoutError) as error:
        say(f"the stack did not come up: {error}")
        return 1
    failed = [label for label, passed in results.items() if not passed]
    say(f"done in {time.monotonic() - started:.0f}s: " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
