"""The multi-host topology of deploy/topology/, run on one machine with real processes.

Every "host" is its own process tree on its own loopback port:

* two **back routers** - ``inference-service serve`` with deploy/topology/back.toml, each
  spawning its own llama-server - serving the same model id;
* the **LiteLLM proxy** with deploy/topology/gateway.yaml, both back routers being
  deployments of one model name;
* a **front router** with deploy/topology/front.toml: a local model of its own plus back
  router A's model as ``runtime = "remote"``.

A back router can be killed (SIGKILL, as a host dies) and started again on the same port,
which the gateway and the front router were configured with - nothing in front of it is
touched. The shipped configs are used as they are; only what differs between a data centre
and one test machine is overridden the way an operator would: ``INFERENCE_*`` variables
(bind address, the back router's URL) and the ``--port`` option. Each simulated host's
llama-server gets one thread, as every llama-server in the suite does (:mod:`.cpu_share`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.api import gone, llama_servers
from tests.support.gateway import running_litellm
from tests.support.prometheus import sample
from tests.support.service import REPO_ROOT, ServiceProcess, free_port, running_service

TOPOLOGY_DIR = REPO_ROOT / "deploy" / "topology"
BACK_CONFIG = TOPOLOGY_DIR / "back.toml"
FRONT_CONFIG = TOPOLOGY_DIR / "front.toml"
GATEWAY_CONFIG = TOPOLOGY_DIR / "gateway.yaml"

#: The model every back router serves, and its name at the gateway.
MODEL_ID = "smollm2"
GATEWAY_MODEL = f"inference:{MODEL_ID}"
#: The front router's own (local) model.
FRONT_LOCAL_MODEL = "gemma-3-270m"
GATEWAY_MASTER_KEY = "sk-topology-test"
READY_TIMEOUT_S = 180.0
LOOPBACK = {"INFERENCE_HOST": "127.0.0.1"}  # the shipped configs bind 0.0.0.0, as real hosts do


@dataclass
class BackRouter:
    """One back router "host": a fixed port, and the process currently serving on it (if any)."""

    name: str
    port: int
    log_dir: Path
    _stack: ExitStack = field(default_factory=ExitStack)
    service: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        """Start the router (it preloads its model) and wait until ``/health/ready``."""
        assert self.service is None or self.service.process.poll() is not None, f"{self.name} is already running"
        self._stack.close()
        self._stack = ExitStack()
        self.service = self._stack.enter_context(
            running_service(
                BACK_CONFIG,
                self.log_dir / self.name,
                port=self.port,
                env=LOOPBACK,
                ready_timeout_s=READY_TIMEOUT_S,
                wait_ready=True,
            )
        )
        return self.service

    def kill(self) -> list[int]:
        """SIGKILL the router (``kill -9``: no shutdown code runs); returns its llama-server pids.

        Nothing here touches the children: they must die by themselves (PR_SET_PDEATHSIG).
        """
        assert self.service is not None and self.service.process.poll() is None, f"{self.name} is not running"
        children = [child.pid for child in llama_servers(self.service)]
        self.service.process.send_signal(signal.SIGKILL)
        self.service.process.wait()
        return children

    def running(self) -> bool:
        return self.service is not None and self.service.process.poll() is None

    def requests_served(self, model_id: str = MODEL_ID) -> float:
        """The router's own count of successful chat completions for ``model_id`` (its /metrics)."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        labels = {"model": model_id, "endpoint": "chat/completions", "status": "200"}
        return sample(response.text, "inference_requests_total", **labels) or 0.0

    def close(self) -> None:
        self._stack.close()


@dataclass
class Topology:
    back_a: BackRouter
    back_b: BackRouter
    gateway_url: str
    front: ServiceProcess
    #: The front router's health interval for remote models (from front.toml).
    remote_health_interval_s: float

    @property
    def backs(self) -> tuple[BackRouter, BackRouter]:
        return self.back_a, self.back_b


def remote_health_interval_s() -> float:
    """``runtimes.remote.health_interval_s`` as the front router reads front.toml."""
    from inference_service.config import load_settings

    return load_settings(FRONT_CONFIG).runtimes.remote.health_interval_s


def wait_all_gone(pids: list[int], timeout_s: float) -> float:
    """Seconds until every pid has exited; TimeoutError naming the survivors otherwise."""
    started = time.monotonic()
    while survivors := [pid for pid in pids if not gone(pid)]:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"still running {timeout_s:g}s after their router was killed: {survivors}")
        time.sleep(0.02)
    return time.monotonic() - started


@contextmanager
def running_topology(log_dir: Path) -> Iterator[Topology]:
    """Start both back routers, the gateway over them and the front router over back router A."""
    with ExitStack() as stack:
        back_a = BackRouter("router-a", free_port(), log_dir)
        back_b = BackRouter("router-b", free_port(), log_dir)
        for back in (back_a, back_b):
            stack.callback(back.close)
            back.start()
        gateway_env = {
            "ROUTER_A_API_BASE": f"{back_a.url}/v1",
            "ROUTER_B_API_BASE": f"{back_b.url}/v1",
            "ROUTER_API_KEY": "no-key-needed",  # the back routers set no api_key; LiteLLM needs some key
        }
        gateway_url = stack.enter_context(running_litellm(GATEWAY_CONFIG, log_dir, GATEWAY_MASTER_KEY, gateway_env))
        front_env = {
            **LOOPBACK,
            f"INFERENCE_MODELS__{MODEL_ID.upper()}__URL": back_a.url,
        }
        front = stack.enter_context(
            running_service(
                FRONT_CONFIG, log_dir / "front", env=front_env, ready_timeout_s=READY_TIMEOUT_S, wait_ready=True
            )
        )
        yield Topology(back_a, back_b, gateway_url, front, remote_health_interval_s())
