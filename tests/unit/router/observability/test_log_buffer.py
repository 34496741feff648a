"""The router's in-memory log: numbered lines, tails, and "everything after N" for followers."""

from __future__ import annotations

import gc
import json
import logging
import weakref

from fastapi import FastAPI
from fastapi.testclient import TestClient

from inference_service.router.api import logs as api_logs
from inference_service.router.observability.log_buffer import LogBuffer
from inference_service.router.observability.log_format import JsonFormatter


def _logger(buffer: LogBuffer) -> logging.Logger:
    logger = logging.getLogger(f"test.log_buffer.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(buffer)
    return logger


def test_follower_gets_each_line_once_in_order() -> None:
    buffer = LogBuffer(capacity=10)
    logger = _logger(buffer)
    logger.info("one")
    lines, last = buffer.tail(None)
    logger.info("two")
    logger.info("three")
    new, last = buffer.since(last)
    assert (lines, new) == (["one"], ["two", "three"])
    assert buffer.since(last) == ([], last)


def test_tail_keeps_only_the_last_lines_within_capacity() -> None:
    buffer = LogBuffer(capacity=3)
    logger = _logger(buffer)
    for number in range(5):
        logger.info("line %d", number)
    assert buffer.tail(None)[0] == ["line 2", "line 3", "line 4"]
    assert buffer.tail(2)[0] == ["line 3", "line 4"]
    assert buffer.tail(0)[0] == []


def test_json_format_has_one_object_per_line_with_the_access_fields() -> None:
    buffer = LogBuffer(capacity=3)
    buffer.setFormatter(JsonFormatter())
    logger = _logger(buffer)
    logger.info("GET /v1/models 200", extra={"access": {"status": 200, "duration_ms": 1.5, "model": None}})
    entry = json.loads(buffer.tail(None)[0][0])
    assert entry["message"] == "GET /v1/models 200" and entry["level"] == "info"
    assert entry["status"] == 200 and entry["duration_ms"] == 1.5 and "model" not in entry


class _PartialBody:
    """Stands for what a failed request's frames hold (a partly read body)."""


def _log_failure(logger: logging.Logger) -> weakref.ref[_PartialBody]:
    body = _PartialBody()

    def read(partial: _PartialBody) -> None:
        """Fails holding ``partial`` in its frame, as a request body would be."""
        raise ConnectionError("client gone")

    try:
        read(body)
    except ConnectionError:
        logger.exception("unhandled error")
    return weakref.ref(body)


def test_a_logged_exception_keeps_its_traceback_text_but_not_its_frames() -> None:
    buffer = LogBuffer(capacity=10)
    held = _log_failure(_logger(buffer))
    gc.collect()
    assert held() is None, "the buffer keeps the traceback's frames (and all their locals) alive"
    line = buffer.tail(None)[0][0]
    assert line.startswith("unhandled error\nTraceback") and "ConnectionError: client gone" in line


def test_json_format_keeps_the_exception_text_of_a_buffered_record() -> None:
    buffer = LogBuffer(capacity=3)
    buffer.setFormatter(JsonFormatter())
    _log_failure(_logger(buffer))
    entry = json.loads(buffer.tail(None)[0][0])
    assert entry["message"] == "unhandled error" and "ConnectionError: client gone" in entry["exception"]


def test_format_arguments_are_kept_as_text_not_as_objects() -> None:
    buffer = LogBuffer(capacity=3)
    argument = _PartialBody()
    _logger(buffer).info("read %s", argument)
    held = weakref.ref(argument)
    expected = f"read {argument}"
    del argument
    gc.collect()
    assert held() is None and buffer.tail(None)[0] == [expected]


def test_the_logs_endpoint_renders_a_logged_lone_surrogate() -> None:
    """Any text may be logged - an exception quoting a client's ``"\\udfff"`` - and the tail must still answer."""
    buffer = LogBuffer(capacity=3)
    _logger(buffer).info("no model '\udfff'")
    app = FastAPI()
    app.state.log_buffer = buffer
    app.include_router(api_logs.router)
    with TestClient(app) as client:
        response = client.get("/v1/logs", params={"tail": 1})
    assert response.status_code == 200 and response.json()["lines"] == ["no model '\udfff'"]
