"""Fallbacks against real llama-servers: a model that cannot take a request hands it on, and says so."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat
from tests.support.busy import request_in_flight
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

BROKEN = "broken"
#: A llama.cpp model whose file does not exist: it fails to load, with that reason.
BROKEN_MODEL = smollm2(path="/nonexistent/model.gguf", fallbacks=[SMOLLM2_ID])


def fallbacks_counted(service: ServiceProcess, model: str, fallback: str, reason: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=30).text
    pattern = rf'^inference_fallbacks_total\{{fallback="{fallback}",model="{model}",reason="{reason}"\}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_failed_model_is_answered_by_its_fallback_which_the_response_names(start_service: StartService) -> None:
    service = start_service({BROKEN: BROKEN_MODEL, SMOLLM2_ID: smollm2()})

    response = chat(service, BROKEN)

    assert response.status_code == 200, response.text
    assert response.json()["model"] == SMOLLM2_ID
    assert response.headers["X-Inference-Model"] == SMOLLM2_ID
    assert fallbacks_counted(service, BROKEN, SMOLLM2_ID, "model_unavailable") == 1


def test_a_stream_falls_back_the_same_way(start_service: StartService) -> None:
    service = start_service({BROKEN: BROKEN_MODEL, SMOLLM2_ID: smollm2()})
    body = {"model": BROKEN, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "stream": True}

    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert response.status_code == 200
    assert response.headers["X-Inference-Model"] == SMOLLM2_ID
    assert lines[-1] == "data: [DONE]" and f'"model":"{SMOLLM2_ID}"' in lines[0]
    assert fallbacks_counted(service, BROKEN, SMOLLM2_ID, "model_unavailable") == 1


def test_a_full_queue_is_answered_by_the_fallback(start_service: StartService) -> None:
    service = start_service(
        {
            SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1, queue_size=0, fallbacks=[GEMMA_ID]),
            GEMMA_ID: gemma(),
        }
    )
    with request_in_flight(service, SMOLLM2_ID):
        response = chat(service, SMOLLM2_ID)

    assert response.status_code == 200, response.text
    assert response.headers["X-Inference-Model"] == GEMMA_ID
    assert fallbacks_counted(service, SMOLLM2_ID, GEMMA_ID, "queue_full") == 1


def test_a_client_error_is_never_sent_to_a_fallback(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(fallbacks=[GEMMA_ID]), GEMMA_ID: gemma()})
    # A prompt far longer than the slot's context: llama-server itself refuses it with 400.
    body = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "word " * 2000}], "max_tokens": 2}
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60)

    assert response.status_code == 400, response.text
    assert fallbacks_counted(service, SMOLLM2_ID, GEMMA_ID, "model_unavailable") == 0
    assert httpx.get(f"{service.url}/v1/models/{GEMMA_ID}", timeout=30).json()["status"] == "unloaded"


def test_without_a_fallback_a_failed_model_still_answers_503_with_its_reason(start_service: StartService) -> None:
    service = start_service({BROKEN: smollm2(path="/nonexistent/model.gguf")})

    response = chat(service, BROKEN)

    assert response.status_code == 503
    assert "not found" in response.json()["error"]["message"]
