"""deploy/kubernetes/: every manifest valid for a pinned Kubernetes release, and consistent with
the service it deploys (its routes, its port, its shutdown drain, the configs it mounts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy import (
    KUBERNETES_VERSION,
    labels_match,
    manifests,
    resources,
    route_paths,
    settings_from_text,
    shutdown_grace_s,
    validate_kubernetes_type,
)

ALL = list(manifests())
#: Kinds whose schemas ship with Kubernetes; anything else is a CRD and validated below by hand.
CRD_KINDS = {"ServiceMonitor"}


def router_deployments() -> list[dict[str, Any]]:
    return [
        d
        for d in resources("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "router"
    ]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def profile_config(deployment: dict[str, Any]) -> tuple[str, Any]:
    """The config.toml this Deployment mounts (ConfigMap key), and the service's Settings for it."""
    mount = next(
        m for m in container(deployment)["volumeMounts"] if m["mountPath"] == "/etc/inference-service/config.toml"
    )
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    config_map = next(c for c in resources("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])
    text = config_map["data"][mount["subPath"]]
    return text, settings_from_text(text)


def named_port(deployment: dict[str, Any], name: str | int) -> int:
    if isinstance(name, int):
        return name
    return next(port["containerPort"] for port in container(deployment)["ports"] if port["name"] == name)


def test_manifests_are_found() -> None:
    kinds = {resource["kind"] for _, resource in ALL}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceMonitor"} <= kinds, kinds
    assert len(router_deployments()) >= 2, "one Deployment per GPU host profile"


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        pytest.param(p, r, id=f"{p.name}:{r['kind']}/{r['metadata']['name']}")
        for p, r in ALL
        if r["kind"] not in CRD_KINDS
    ],
)
def test_manifest_is_valid_for_the_pinned_kubernetes(path: Path, resource: dict[str, Any]) -> None:
    """Strict: an unknown or misspelt field fails too, not only a wrong type."""
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_rejected() -> None:
    """The validator is live: a probe port given as a list fails."""
    deployment = yaml.safe_load(yaml.safe_dump(router_deployments()[0]))
    container(deployment)["readinessProbe"]["httpGet"]["port"] = ["http"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_service_monitor_is_a_crd_checked_by_hand() -> None:
    """No schema for monitoring.coreos.com/v1 ships with Kubernetes: the validator says so. Its
    metadata and selector are Kubernetes types and validated as such; the endpoint fields are
    checked against the Services and the service's /metrics route."""
    (monitor,) = resources("ServiceMonitor")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, KUBERNETES_VERSION, strict=True)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    validate_kubernetes_type(monitor["metadata"], "objectmeta-meta-v1")
    validate_kubernetes_type(monitor["spec"]["selector"], "labelselector-meta-v1")
    services = [
        s
        for s in resources("Service")
        if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    assert {s["metadata"]["name"] for s in services} == {
        s["metadata"]["name"] for s in resources("Service") if s["metadata"]["name"].startswith("inference-service")
    }
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] in route_paths()
        assert endpoint["path"] == "/metrics"
        for service in services:
            assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}, service["metadata"]["name"]


@pytest.mark.parametrize("deployment", router_deployments(), ids=lambda d: d["metadata"]["name"])
class TestRouterDeployment:
    def test_mounted_config_is_a_valid_service_config(self, deployment: dict[str, Any]) -> None:
        _, settings = profile_config(deployment)
        assert settings.models, "the profile serves no model"
        assert settings.host == "0.0.0.0"

    def test_probes_hit_the_services_routes_on_its_port(self, deployment: dict[str, Any]) -> None:
        _, settings = profile_config(deployment)
        spec = container(deployment)
        assert spec["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/health"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = spec[probe]["httpGet"]
            assert get["path"] in route_paths(), f"{probe} {get['path']} is not a route"
            assert named_port(deployment, get["port"]) == settings.port, (
                f"{probe} port is not the service's {settings.port}"
            )

    def test_startup_probe_waits_as_long_as_a_preload_may_take(self, deployment: dict[str, Any]) -> None:
        """/health answers only after the preloads (concurrent, each up to health_timeout_s)."""
        _, settings = profile_config(deployment)
        startup = container(deployment)["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= settings.health_timeout_s

    def test_termination_grace_outlasts_the_drain(self, deployment: dict[str, Any]) -> None:
        """preStop, then SIGTERM: the router drains for shutdown_grace_s and stops its children
        (stop_grace_s each, concurrently) - all before Kubernetes' SIGKILL."""
        _, settings = profile_config(deployment)
        pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        budget = float(pre_stop[1]) + shutdown_grace_s(settings) + settings.stop_grace_s
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > budget, f"terminationGracePeriodSeconds {grace} <= {budget}"

    def test_requests_the_gpus_its_config_uses(self, deployment: dict[str, Any]) -> None:
        _, settings = profile_config(deployment)
        resources_ = container(deployment)["resources"]
        gpus = int(resources_["limits"]["nvidia.com/gpu"])
        assert int(resources_["requests"]["nvidia.com/gpu"]) == gpus >= 1
        for model in settings.models.values():
            assert len(model.tensor_split or [1]) <= gpus, f"{model.id} is split over more GPUs than requested"
            assert (model.main_gpu or 0) < gpus, f"{model.id} wants GPU {model.main_gpu} of {gpus}"
        assert settings.runtimes.llamacpp.cuda, "a GPU profile must run the CUDA llama-server"
        assert deployment["spec"]["template"]["spec"]["nodeSelector"], "no nodeSelector for the GPU host profile"

    def test_models_volume_is_mounted_where_the_config_reads_models(self, deployment: dict[str, Any]) -> None:
        _, settings = profile_config(deployment)
        mount = next(m for m in container(deployment)["volumeMounts"] if m["mountPath"] == str(settings.models_dir))
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert "persistentVolumeClaim" in volume or "hostPath" in volume, volume

    def test_runs_as_the_images_non_root_user(self, deployment: dict[str, Any]) -> None:
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0

    def test_a_service_selects_it_on_the_service_port(self, deployment: dict[str, Any]) -> None:
        _, settings = profile_config(deployment)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        (service,) = [s for s in resources("Service") if labels_match(s["spec"]["selector"], pod_labels)]
        (port,) = service["spec"]["ports"]
        assert named_port(deployment, port["targetPort"]) == settings.port


def test_every_claimed_volume_is_declared() -> None:
    claims = {c["metadata"]["name"] for c in resources("PersistentVolumeClaim")}
    for deployment in resources("Deployment"):
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_disruption_budgets_leave_a_pool_able_to_drain() -> None:
    """Each budget selects a Deployment with more replicas than it must keep, so a node drain can proceed."""
    for budget in resources("PodDisruptionBudget"):
        selected = [
            d
            for d in resources("Deployment")
            if labels_match(budget["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, budget["metadata"]["name"]
        assert selected[0]["spec"]["replicas"] > budget["spec"]["minAvailable"]


def test_gateway_routes_each_model_to_a_profile_that_serves_it() -> None:
    (config_map,) = [c for c in resources("ConfigMap") if c["metadata"]["name"] == "litellm-gateway-config"]
    gateway = yaml.safe_load(config_map["data"]["config.yaml"])
    served: dict[str, set[str]] = {}
    for deployment in router_deployments():
        _, settings = profile_config(deployment)
        names = {name for model in settings.models.values() for name in (model.id, *model.aliases)}
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for service in resources("Service"):
            if labels_match(service["spec"]["selector"], pod_labels):
                served[f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/v1"] = names
    assert gateway["model_list"]
    for entry in gateway["model_list"]:
        params = entry["litellm_params"]
        upstream = params["model"].removeprefix("openai/")
        assert entry["model_name"] == f"inference:{upstream}"
        assert upstream in served.get(params["api_base"], set()), f"{params['api_base']} does not serve {upstream}"
