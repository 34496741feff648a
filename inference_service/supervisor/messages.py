"""The messages a model's actor handles, one at a time, in the order they arrive.

Each says what happened or what is asked; the actor decides, against its current state
and generation, whether it still applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from inference_service.config import ModelConfig, Settings
from inference_service.runtimes.base import Endpoint, Runtime


@dataclass(frozen=True)
class Wanted:
    """Someone waits for the model to be ready (the waiter is already registered)."""

    force: bool


@dataclass(frozen=True)
class Granted:
    """The capacity scheduler reserved room for this model."""


@dataclass(frozen=True)
class Unload:
    done: asyncio.Future[None]


@dataclass(frozen=True)
class Evict:
    reason: str
    #: The TTL reaper's eviction: refused while any request is leased, even one still waiting.
    idle_only: bool = False
    #: Called when the actor goes ahead with it (a replica set announces a scale-down only then).
    accepted: Callable[[], None] | None = None


@dataclass(frozen=True)
class KeepAlive:
    """A request set how long the model stays loaded once idle (Ollama's ``keep_alive``):
    seconds, ``inf`` for ever; None gives the decision back to the model's ``ttl_s``."""

    ttl_s: float | None


@dataclass(frozen=True)
class Yield:
    reason: str


@dataclass(frozen=True)
class Reopen:
    """The model that made this one yield no longer waits: serve requests again."""


@dataclass(frozen=True)
class Started:
    generation: int
    endpoint: Endpoint | None = None
    error: str | None = None


@dataclass(frozen=True)
class Crashed:
    generation: int
    reason: str


@dataclass(frozen=True)
class Stopped:
    generation: int


@dataclass(frozen=True)
class Reconfigure:
    """A new config for the model. With a ``runtime`` its process must restart to take it: the
    model drains and stops as for an unload, then continues with the new runtime - requests
    waiting for it are kept and served by the new process. Without, it applies at once."""

    config: ModelConfig
    runtime: Runtime | None
    done: asyncio.Future[None]


@dataclass(frozen=True)
class UseSettings:
    """Top-level limits from a config reload: they decide from the next message on, in order with
    what the actor was told before (a crash reported earlier is judged by the policy of its time)."""

    settings: Settings


@dataclass(frozen=True)
class Shutdown:
    """Final: stop everything, refuse whatever waits; every later message is answered at once."""

    done: asyncio.Future[None]


Message = (
    Wanted
    | Granted
    | Unload
    | Evict
    | KeepAlive
    | Yield
    | Reopen
    | Started
    | Crashed
    | Stopped
    | Reconfigure
    | UseSettings
    | Shutdown
)


def answer(futures: list[asyncio.Future[None]]) -> None:
    """Tell everyone in ``futures`` that what they asked for is done (emptying the list)."""
    pending = list(futures)
    futures.clear()
    for future in pending:
        if not future.done():
            future.set_result(None)


def answer_after_shutdown(message: Message) -> None:
    """A model that has shut down runs nothing: an unload, reconfigure or shutdown of it is done at once.

    Requests for its endpoint are refused before they become messages (``wait_ready``);
    the rest (a late watcher, a capacity decision) concern an instance that is gone.
    """
    match message:
        case Unload(done=done) | Reconfigure(done=done) | Shutdown(done=done):
            answer([done])
        case _:
            pass
