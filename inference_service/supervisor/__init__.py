"""Process supervision: one owner for every model's state and every runtime process."""

from inference_service.supervisor.errors import InsufficientCapacity, ModelUnavailable, SupervisorError, UnknownModel
from inference_service.supervisor.leases import Lease
from inference_service.supervisor.model import ModelStatus, ReplicaStatus
from inference_service.supervisor.replicas.routing import Affinity
from inference_service.supervisor.state import ModelState
from inference_service.supervisor.supervisor import RuntimeFactory, Supervisor

__all__ = [
    "Affinity",
    "InsufficientCapacity",
    "Lease",
    "ModelState",
    "ModelStatus",
    "ModelUnavailable",
    "ReplicaStatus",
    "RuntimeFactory",
    "Supervisor",
    "SupervisorError",
    "UnknownModel",
]
