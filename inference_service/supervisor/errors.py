"""What the supervisor tells its callers when it cannot give them a model."""

from __future__ import annotations

from collections.abc import Sequence


class SupervisorError(Exception):
    pass


class UnknownModel(SupervisorError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"model {name!r} does not exist; available: {', '.join(known)}")


class InsufficientCapacity(SupervisorError):
    """The model can never fit: its footprint exceeds ``memory_budget_mb``, or ``max_loaded_models`` is 0."""


class ModelUnavailable(SupervisorError):
    """The model failed to load, its backend is down, or it was unloaded meanwhile; the message says which."""
