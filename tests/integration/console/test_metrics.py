"""``/metrics`` as ops expect it, and the Grafana dashboard in deploy/grafana/ over exactly those metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.console.conftest import chat_body
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.prometheus import sample
from tests.support.service import REPO_ROOT

pytestmark = pytest.mark.integration

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "inference-service.json"
#: PromQL words that are not metric names: functions, aggregations, modifiers.
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "label_values",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def _metrics(api: httpx.Client) -> str:
    response = api.get("/metrics")
    assert response.status_code == 200
    return response.text


def _state(api: httpx.Client, model_id: str, state: str) -> None:
    if api.get(f"/v1/models/{model_id}").json()["status"] != state:
        assert api.post(f"/v1/models/{model_id}/{'load' if state == 'loaded' else 'unload'}").status_code == 200


def test_router_exports_the_standard_process_and_python_metrics(api: httpx.Client) -> None:
    text = _metrics(api)
    assert (sample(text, "process_resident_memory_bytes") or 0) > 10 * 2**20
    assert sample(text, "process_cpu_seconds_total") is not None
    assert sample(text, "python_info") == 1
    assert sample(text, "python_gc_objects_collected_total", generation="0") is not None


def test_no_rss_series_for_a_model_that_is_not_loaded(api: httpx.Client) -> None:
    _state(api, GEMMA_ID, "loaded")
    assert (sample(_metrics(api), "inference_process_rss_bytes", model=GEMMA_ID) or 0) > 10 * 2**20
    _state(api, GEMMA_ID, "unloaded")
    text = _metrics(api)
    assert sample(text, "inference_process_rss_bytes", model=GEMMA_ID) is None
    assert (sample(text, "inference_process_rss_bytes", model=SMOLLM2_ID) or 0) > 10 * 2**20


def test_children_llamacpp_metrics_are_reexported_with_a_model_label(api: httpx.Client) -> None:
    assert api.post("/v1/chat/completions", json=chat_body(max_tokens=3)).status_code == 200
    text = _metrics(api)
    assert (sample(text, "llamacpp:tokens_predicted_total", model=SMOLLM2_ID) or 0) >= 3
    assert sample(text, "llamacpp:prompt_tokens_total", model=SMOLLM2_ID) is not None
    list(text_string_to_metric_families(text))  # the merged exposition still parses


def test_scraping_metrics_never_wakes_an_unloaded_model(api: httpx.Client) -> None:
    _state(api, GEMMA_ID, "unloaded")
    text = _metrics(api)
    assert not [line for line in text.splitlines() if line.startswith("llamacpp:") and f'model="{GEMMA_ID}"' in line]
    assert api.get(f"/v1/models/{GEMMA_ID}").json()["status"] == "unloaded"


def _expressions(node: Any) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and templating queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_expressions(item))
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, strings, ranges and words removed)."""
    bare = re.sub(r"label_values\(\s*([^,)]+),\s*\w+\s*\)", r" \1 ", expression)  # (metric, label)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if word not in PROMQL_WORDS}


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition declares: samples, and the series of families with none yet
    (a labelled counter nobody has incremented, such as rejections)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_metric_names_are_found_in_promql() -> None:
    expression = 'histogram_quantile(0.95, sum by (le, model) (rate(x_bucket{model=~"$model"}[5m]))) / llamacpp:y'
    assert metric_names(expression) == {"x_bucket", "llamacpp:y"}
    assert metric_names("label_values(inference_model_state, job)") == {"inference_model_state"}


def test_grafana_dashboard_queries_only_metrics_the_service_exports(api: httpx.Client) -> None:
    _state(api, SMOLLM2_ID, "loaded")
    streamed = api.post(
        "/v1/chat/completions", json=chat_body(max_tokens=3, stream=True, stream_options={"include_usage": True})
    )
    assert streamed.status_code == 200
    exported = exported_names(_metrics(api))
    dashboard = json.loads(Path(DASHBOARD).read_text())
    expressions = _expressions(dashboard)
    assert len(dashboard["panels"]) >= 10 and len(expressions) >= 15
    used = set().union(*(metric_names(expression) for expression in expressions))
    assert not used - exported, f"the dashboard queries metrics the service does not export: {sorted(used - exported)}"
    for topic in (
        "inference_requests_total",
        "inference_request_duration_seconds_bucket",
        "inference_time_to_first_token_seconds_bucket",
        "inference_completion_tokens_total",
        "inference_queue_depth",
        "inference_model_state",
        "inference_process_rss_bytes",
    ):
        assert topic in used, f"the dashboard has no panel over {topic}"
