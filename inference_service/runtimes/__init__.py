"""One module per kind of runtime: how to start a model on it, reach it, and notice it is down."""

from inference_service.runtimes.base import Endpoint, ProcessInfo, Runtime, RuntimeStartError

__all__ = ["Endpoint", "ProcessInfo", "Runtime", "RuntimeStartError"]
