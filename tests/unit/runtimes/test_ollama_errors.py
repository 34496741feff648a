"""Ollama's native ``{"error": "..."}`` bodies become OpenAI envelopes with the same status."""

from __future__ import annotations

import pytest

from inference_service.router.serving.errors import upstream_error


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "model 'qwen2.5:7b' not found"), (400, "model is required"), (500, "llama runner process has terminated")],
)
def test_ollama_string_error_keeps_status_and_message(status: int, message: str) -> None:
    error = upstream_error(status, {"error": message})
    assert error.status == status
    assert error.body() == {"error": {"message": message, "type": "upstream_error", "param": None, "code": None}}
