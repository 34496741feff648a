"""Tracing's effective settings: the ``[tracing]`` table, overridden by the standard ``OTEL_*`` variables.

The variables are the OpenTelemetry SDK's own, so an operator configures this service as any
other; the table says the same in the config file, and a variable set wins over its key.
Tracing is on once an OTLP endpoint is known, unless ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. A bad value is a :class:`ConfigError` naming the variable or
the key it came from, so start-up fails with one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from inference_service.config import ConfigError, TracingConfig

#: Table key -> the variables that set it, the first one set winning (the traces-specific one first).
VARIABLES = {
    "protocol": ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    "service_name": ("OTEL_SERVICE_NAME",),
    "sampler": ("OTEL_TRACES_SAMPLER",),
    "sampler_arg": ("OTEL_TRACES_SAMPLER_ARG",),
    "capture_message_content": ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",),
}
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
DEFAULT_SERVICE_NAME = "inference-service"


@dataclass(frozen=True)
class TracingSettings:
    """What the SDK is set up with: where spans go, what the service is called, how much is sampled."""

    traces_url: str
    service_name: str
    sampler: str
    sampler_arg: float | None
    resource_attributes: dict[str, str]
    capture_message_content: bool


def _pairs(text: str) -> dict[str, str]:
    """``key=value,key=value`` with URL-encoded values, as the SDK reads ``OTEL_RESOURCE_ATTRIBUTES``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{RESOURCE_ATTRIBUTES}: {item!r} is not key=value")
        pairs[key.strip()] = unquote(value.strip())
    return pairs


def _overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The table keys the environment sets, and the variable each came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, names in VARIABLES.items():
        for name in names:
            if value := environ.get(name, "").strip():
                values[key] = value.lower() if key == "sampler" else value
                sources[key] = name
                break
    # The environment decides where traces go as a whole: one endpoint variable set, the table's are not used.
    if environ.get(TRACES_ENDPOINT) or environ.get(ENDPOINT):
        values["traces_endpoint"] = environ.get(TRACES_ENDPOINT) or None
        values["endpoint"] = environ.get(ENDPOINT) or None
        sources.update(traces_endpoint=TRACES_ENDPOINT, endpoint=ENDPOINT)
    return values, sources


def resolve(table: TracingConfig, environ: Mapping[str, str] = os.environ) -> TracingSettings | None:
    """The effective settings, or None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return None
    if exporter != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {exporter!r} is not supported: 'otlp' (OTLP/HTTP) or 'none'")
    values, sources = _overrides(environ)
    if RESOURCE_ATTRIBUTES in environ:
        values["resource_attributes"] = {**table.resource_attributes, **_pairs(environ[RESOURCE_ATTRIBUTES])}
        sources["resource_attributes"] = RESOURCE_ATTRIBUTES
    try:
        config = TracingConfig.model_validate({**table.model_dump(), **values})
    except ValidationError as error:
        first = error.errors()[0]
        key = str(first["loc"][0])
        raise ConfigError(f"{sources.get(key, f'tracing.{key}')}: {first['msg']}") from None
    if config.traces_endpoint:
        url, key = config.traces_endpoint, "traces_endpoint"
    elif config.endpoint:
        url, key = f"{config.endpoint.rstrip('/')}/v1/traces", "endpoint"
    else:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{sources.get(key, f'tracing.{key}')}: {url!r} is not an http:// or https:// URL")
    return TracingSettings(
        traces_url=url,
        service_name=config.service_name or config.resource_attributes.get("service.name", DEFAULT_SERVICE_NAME),
        sampler=config.sampler,
        sampler_arg=config.sampler_arg,
        resource_attributes=config.resource_attributes,
        capture_message_content=config.capture_message_content,
    )
