"""Tracing's settings: the ``[tracing]`` table, the standard ``OTEL_*`` variables winning over it,
off unless an endpoint is known, and a bad value named by where it came from."""

from __future__ import annotations

import pytest

from inference_service.config import ConfigError, TracingConfig
from inference_service.router.observability.tracing.settings import TracingSettings, resolve

COLLECTOR = "http://collector:4318"


def test_tracing_is_off_without_an_endpoint() -> None:
    assert resolve(TracingConfig(service_name="x", sampler="always_on"), {}) is None


def test_the_base_endpoint_gets_the_traces_path() -> None:
    settings = resolve(TracingConfig(endpoint=COLLECTOR + "/"), {})
    assert settings is not None and settings.traces_url == COLLECTOR + "/v1/traces"


def test_the_traces_endpoint_is_used_as_it_is() -> None:
    settings = resolve(TracingConfig(endpoint=COLLECTOR, traces_endpoint="http://other:9999/custom"), {})
    assert settings is not None and settings.traces_url == "http://other:9999/custom"


def test_defaults_are_the_sdks() -> None:
    assert resolve(TracingConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR}) == TracingSettings(
        traces_url=COLLECTOR + "/v1/traces",
        service_name="inference-service",
        sampler="parentbased_always_on",
        sampler_arg=None,
        resource_attributes={},
        capture_message_content=False,
    )


def test_the_environment_wins_over_the_table() -> None:
    table = TracingConfig(traces_endpoint="http://table:4318/v1/traces", service_name="table", sampler="always_off")
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR,
        "OTEL_SERVICE_NAME": "environment",
        "OTEL_TRACES_SAMPLER": "TraceIdRatio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    settings = resolve(table, environ)
    assert settings is not None
    assert (settings.traces_url, settings.service_name) == (COLLECTOR + "/v1/traces", "environment")
    assert (settings.sampler, settings.sampler_arg, settings.capture_message_content) == ("traceidratio", 0.25, True)


def test_resource_attributes_from_the_environment_are_added_to_the_tables_key_by_key() -> None:
    table = TracingConfig(endpoint=COLLECTOR, resource_attributes={"deployment.environment": "prod", "team": "a"})
    settings = resolve(table, {"OTEL_RESOURCE_ATTRIBUTES": "team=b, host.name=gpu%201"})
    assert settings is not None
    assert settings.resource_attributes == {"deployment.environment": "prod", "team": "b", "host.name": "gpu 1"}


def test_service_name_may_come_from_the_resource_attributes() -> None:
    settings = resolve(TracingConfig(endpoint=COLLECTOR), {"OTEL_RESOURCE_ATTRIBUTES": "service.name=edge"})
    assert settings is not None and settings.service_name == "edge"


@pytest.mark.parametrize("environ", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_the_sdks_off_switches_turn_a_configured_tracing_off(environ: dict[str, str]) -> None:
    assert resolve(TracingConfig(endpoint=COLLECTOR), environ) is None


@pytest.mark.parametrize(
    ("table", "environ", "named"),
    [
        (TracingConfig(endpoint=COLLECTOR), {"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: "),
        (TracingConfig(endpoint=COLLECTOR), {"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG: "),
        (TracingConfig(endpoint=COLLECTOR), {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL: "),
        (TracingConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT: "),
        (TracingConfig(endpoint="ftp://collector"), {}, "tracing.endpoint: "),
        (TracingConfig(endpoint=COLLECTOR), {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: "),
        (TracingConfig(endpoint=COLLECTOR), {"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES: "),
    ],
    ids=["sampler", "sampler-arg", "protocol", "endpoint-not-a-url", "table-endpoint", "exporter", "resource"],
)
def test_a_bad_value_is_one_line_naming_where_it_came_from(
    table: TracingConfig, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve(table, environ)
    assert str(raised.value).startswith(named)
    assert "\n" not in str(raised.value)
