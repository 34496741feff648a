"""The router's in-memory log: numbered lines, tails, and "everything after N" for followers."""

from __future__ import annotations

import json
import logging

from inference_service.router.log_buffer import LogBuffer
from inference_service.router.log_format import JsonFormatter


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
