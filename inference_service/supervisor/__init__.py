"""Process supervision: one owner for every model's state and every runtime process."""

from inference_service.supervisor.state import ModelState
from inference_service.supervisor.supervisor import (
    InsufficientCapacity,
    ModelStatus,
    ModelUnavailable,
    RuntimeFactory,
    Supervisor,
    SupervisorError,
    UnknownModel,
)

__all__ = [
    "InsufficientCapacity",
    "ModelState",
    "ModelStatus",
    "ModelUnavailable",
    "RuntimeFactory",
    "Supervisor",
    "SupervisorError",
    "UnknownModel",
]
