"""What the route handlers share, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from inference_service.config import Settings
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.tenancy.registry import Tenancy
from inference_service.runtimes.kv_store import KVFileStore
from inference_service.supervisor import Supervisor


@dataclass
class Services:
    settings: Settings
    supervisor: Supervisor
    dispatcher: Dispatcher
    resolver: ModelResolver
    metrics: Metrics
    tenancy: Tenancy
    kv_store: KVFileStore | None = None  # llamacpp models' saved slots (always given by create_app)
    activity: ActivityHistory | None = None  # the activity history (always given by create_app)


def services(request: Request) -> Services:
    found: Services = request.app.state.services  # app.state is untyped; create_app sets it
    return found
