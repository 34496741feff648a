"""Property-based fuzzing of the documented API with schemathesis, against a real router and
llama-server: whatever the generated request, no 5xx but the documented 503/507, no hang,
and every answer matches the OpenAPI schema (status, content type, error envelope)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckContext, GenerationMode, Response

from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

#: Generated answers are capped so the whole run stays within a few minutes on 2 cores.
MAX_TOKENS = 4
REQUEST_TIMEOUT_S = 60
DOCUMENTED_5XX = {503, 507}


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    return start_router(
        {SMOLLM2_ID: smollm2(preload=True, ctx_size=1024, roles=["primary"])}, wait_ready=True, max_body_bytes=1 << 20
    )


@pytest.fixture(scope="module")
def api_schema(router: ServiceProcess) -> schemathesis.BaseSchema:
    """The live service's own /openapi.json: the /v1 operations and Ollama's API take input worth fuzzing."""
    schema = schemathesis.openapi.from_url(router.url + "/openapi.json")
    schema.config.update(base_url=router.url)
    return schema.include(path_regex="^/(v1/|api/|$)")


def no_undocumented_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if response.status_code >= 500 and response.status_code not in DOCUMENTED_5XX:
        raise AssertionError(f"{response.status_code} for {case.method} {case.path}: {response.text[:500]}")
    return None


CHECKS = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    no_undocumented_server_error,
]
VALID, INVALID = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
#: (method, path, generation mode, examples). Only the bodies can be made invalid: any
#: string is a valid model name, so the path-only operations are fuzzed with valid input.
RUNS = [
    ("POST", "/v1/chat/completions", VALID, 30),
    ("POST", "/v1/chat/completions", INVALID, 20),
    ("POST", "/v1/completions", VALID, 20),
    ("POST", "/v1/completions", INVALID, 15),
    ("POST", "/v1/embeddings", VALID, 10),
    ("POST", "/v1/embeddings", INVALID, 10),
    ("GET", "/v1/models", VALID, 2),
    ("GET", "/v1/models/{name}", VALID, 5),
    ("GET", "/v1/models/{name}/logs", VALID, 5),
    ("POST", "/v1/models/{name}/load", VALID, 5),
    ("POST", "/v1/models/{name}/unload", VALID, 5),
    ("POST", "/api/chat", VALID, 20),
    ("POST", "/api/chat", INVALID, 15),
    ("POST", "/api/generate", VALID, 15),
    ("POST", "/api/generate", INVALID, 10),
    ("POST", "/api/embed", VALID, 5),
    ("POST", "/api/embed", INVALID, 5),
    ("POST", "/api/embeddings", VALID, 3),
    ("POST", "/api/show", VALID, 5),
    ("POST", "/api/show", INVALID, 5),
    ("GET", "/api/tags", VALID, 1),
    ("GET", "/api/ps", VALID, 1),
    ("GET", "/api/version", VALID, 1),
    ("GET", "/", VALID, 1),
    ("POST", "/api/pull", VALID, 1),
    ("POST", "/api/push", VALID, 1),
    ("POST", "/api/create", VALID, 1),
    ("POST", "/api/copy", VALID, 1),
    ("DELETE", "/api/delete", VALID, 1),
]
#: Ollama's generating endpoints: a valid request names the real model (most reach llama-server).
OLLAMA_GENERATION = {"/api/chat", "/api/generate"}


@pytest.mark.parametrize(
    ("method", "path", "mode", "examples"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g, _ in RUNS]
)
def test_generated_requests_get_documented_answers(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode, examples: int
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Case) -> None:
        if isinstance(case.body, dict) and path in OLLAMA_GENERATION:
            if mode is VALID:  # short answers from the real model (an invalid body stays as generated)
                options = case.body.get("options")
                case.body["options"] = {**(options if isinstance(options, dict) else {}), "num_predict": MAX_TOKENS}
                case.body["model"] = SMOLLM2_ID
        elif isinstance(case.body, dict) and not path.startswith("/api/"):
            case.body["max_tokens"] = MAX_TOKENS  # short answers: the point is the request, not the text
        case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)

    fuzz()
