"""Process supervision: one owner for every model's state and every runtime process."""

from inference_service.supervisor.errors import InsufficientCapacity, ModelUnavailable, SupervisorError, UnknownModel
from inference_service.supervisor.leases import Lease
from inference_service.supervisor.model import ModelStatus
from inference_service.supervisor.state import ModelState
from inference_service.supervisor.supervisor import RuntimeFactory, Supervisor

__all__ = [
    "InsufficientCapacity",
    "Lease",
    "ModelState",
    "ModelStatus",
    "ModelUnavailable",
    "RuntimeFactory",
    "Supervisor",
    "SupervisorError",
    "UnknownModel",
]
