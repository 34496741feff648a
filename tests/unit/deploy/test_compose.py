"""deploy/compose.yaml (+ the GPU overlay): valid Compose files, wired to the service's port,
routes and shutdown drain; Prometheus and Grafana provisioned to find what they need."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from inference_service.config import TracingConfig
from inference_service.router.observability.tracing.settings import resolve
from inference_service.router.observability.tracing.spans import EXEMPLAR_TRACE_ID
from tests.support.deploy import (
    DEPLOY_DIR,
    compose_binary,
    compose_spec_schema,
    route_paths,
    settings_from_text,
    shutdown_grace_s,
)

COMPOSE = DEPLOY_DIR / "compose.yaml"
COMPOSE_GPU = DEPLOY_DIR / "compose.gpu.yaml"
SERVICE = "inference-service"


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def compose_config(*files: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config``: Compose v2's own parsing, interpolation and validation, no engine needed."""
    argv = [str(compose_binary()), *(arg for file in files for arg in ("-f", str(file))), "config", "--format", "json"]
    env = {key: value for key, value in os.environ.items() if key != "LITELLM_MASTER_KEY"} | environment
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def container_port(service: dict[str, Any]) -> int:
    (mapping,) = service["ports"]
    return int(str(mapping).rsplit(":", 1)[-1])


def mounted_config(service: dict[str, Any], compose_file: Path) -> Path:
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if target == "/etc/inference-service/config.toml":
            return (compose_file.parent / source).resolve()
    raise AssertionError("no config.toml mounted")


def test_schema_is_the_compose_specification() -> None:
    schema = compose_spec_schema()
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "networks"} <= schema["properties"].keys()


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_file_is_valid_against_the_compose_schema(path: Path) -> None:
    jsonschema.Draft7Validator(compose_spec_schema()).validate(load(path))


def test_schema_rejects_a_broken_file() -> None:
    """The schema check is live: an unknown service key fails."""
    broken = load(COMPOSE)
    broken["services"][SERVICE]["helthcheck"] = {"test": ["CMD", "true"]}
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        jsonschema.Draft7Validator(compose_spec_schema()).validate(broken)


def test_compose_accepts_the_stack_and_its_gpu_overlay() -> None:
    result = compose_config(COMPOSE, COMPOSE_GPU, LITELLM_MASTER_KEY="sk-test")
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)
    service = merged["services"][SERVICE]
    assert service["build"]["args"]["CUDA"] == "1"
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert set(merged["services"]) == {SERVICE, "gateway", "prometheus", "grafana", "otel-collector", "tempo"}


def test_gateway_refuses_to_start_without_a_master_key() -> None:
    result = compose_config(COMPOSE)
    assert result.returncode != 0
    assert "LITELLM_MASTER_KEY" in result.stderr


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_mounted_config_is_a_valid_service_config(path: Path) -> None:
    service = load(path)["services"][SERVICE]
    settings = settings_from_text(mounted_config(service, path).read_text())
    assert settings.models


def test_service_port_and_stop_grace_match_the_service() -> None:
    service = load(COMPOSE)["services"][SERVICE]
    settings = settings_from_text(mounted_config(service, COMPOSE).read_text())
    assert container_port(service) == settings.port
    assert duration_s(service["stop_grace_period"]) > shutdown_grace_s(settings) + settings.stop_grace_s


def test_gateway_reaches_the_service_by_its_compose_name() -> None:
    services = load(COMPOSE)["services"]
    base = urlsplit(services["gateway"]["environment"]["INFERENCE_SERVICE_API_BASE"])
    assert (base.hostname, base.port, base.path) == (SERVICE, container_port(services[SERVICE]), "/v1")
    assert services["gateway"]["depends_on"][SERVICE]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_services_metrics_route() -> None:
    services = load(COMPOSE)["services"]
    (config_mount,) = [
        v for v in services["prometheus"]["volumes"] if v.split(":")[1] == "/etc/prometheus/prometheus.yml"
    ]
    prometheus = load((COMPOSE.parent / config_mount.split(":")[0]).resolve())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == SERVICE]
    assert job["metrics_path"] in route_paths()
    assert job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    assert target == f"{SERVICE}:{container_port(services[SERVICE])}"


def test_grafana_provisions_the_datasource_and_the_dashboards_folder() -> None:
    services = load(COMPOSE)["services"]
    mounts = {
        volume.split(":")[1]: (COMPOSE.parent / volume.split(":")[0]).resolve()
        for volume in services["grafana"]["volumes"]
        if volume.startswith(".")
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = load(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    url = urlsplit(datasource["url"])
    assert (url.hostname, url.port) == ("prometheus", container_port(services["prometheus"]))
    (provider,) = load(provisioning / "dashboards" / "inference-service.yaml")["providers"]
    dashboards = Path(provider["options"]["path"])
    assert mounts[str(dashboards)] == DEPLOY_DIR / "grafana", (
        "the provider must read the folder deploy/grafana/ is mounted on"
    )
    for dashboard in (DEPLOY_DIR / "grafana").rglob("*.json"):
        json.loads(dashboard.read_text())  # Grafana skips (and logs) a file it cannot parse


def mounted(service: dict[str, Any], target: str) -> Path:
    """The file of deploy/ a service mounts at ``target``."""
    (source,) = [volume.split(":")[0] for volume in service["volumes"] if volume.split(":")[1] == target]
    return (COMPOSE.parent / source).resolve()


def host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.removeprefix("http://").rpartition(":")
    return host, int(port)


def test_the_service_exports_its_traces_to_the_collectors_otlp_http_receiver() -> None:
    services = load(COMPOSE)["services"]
    collector = load(mounted(services["otel-collector"], "/etc/otelcol/config.yaml"))
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/config.yaml"]
    settings = resolve(TracingConfig(), services[SERVICE]["environment"])  # as the service reads its environment
    assert settings is not None
    url = urlsplit(settings.traces_url)
    _, receiver_port = host_port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    assert (url.hostname, url.port, url.path) == ("otel-collector", receiver_port, "/v1/traces")


def test_the_collector_forwards_the_traces_to_tempos_otlp_receiver() -> None:
    services = load(COMPOSE)["services"]
    collector = load(mounted(services["otel-collector"], "/etc/otelcol/config.yaml"))
    tempo = load(mounted(services["tempo"], "/etc/tempo/tempo.yaml"))
    (pipeline,) = collector["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    _, tempo_port = host_port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert host_port(collector["exporters"][exporter]["endpoint"]) == ("tempo", tempo_port)


def test_grafana_reads_tempo_and_links_the_metrics_exemplars_to_its_traces() -> None:
    services = load(COMPOSE)["services"]
    datasources = mounted(services["grafana"], "/etc/grafana/provisioning") / "datasources"
    (tempo,) = load(datasources / "tempo.yaml")["datasources"]
    tempo_config = load(mounted(services["tempo"], "/etc/tempo/tempo.yaml"))
    url = urlsplit(tempo["url"])
    assert (url.hostname, url.port) == ("tempo", tempo_config["server"]["http_listen_port"])
    (prometheus,) = load(datasources / "prometheus.yaml")["datasources"]
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert link == {"name": EXEMPLAR_TRACE_ID, "datasourceUid": tempo["uid"]}
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
