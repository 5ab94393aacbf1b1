"""gateway.logs: JSON lines and masked phone numbers."""

from __future__ import annotations

import json
import logging

import pytest

from gateway import config as cfg
from gateway import logs
from gateway.errors import ConfigError


def _emit(handler: logging.Handler, msg: str, *args: object, **extra: object) -> str:
    record = logging.makeLogRecord({"name": "septet.test", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": msg, "args": args, **extra})
    for f in handler.filters:
        f.filter(record)  # type: ignore[union-attr]
    return handler.format(record)


@pytest.fixture
def handler() -> logging.Handler:
    h = logging.StreamHandler()
    h.addFilter(logs.MaskNumbers())
    h.setFormatter(logs.JsonLines())
    return h


def test_json_lines_carry_message_level_and_extra_fields(handler: logging.Handler) -> None:
    line = _emit(handler, "submitted %d parts", 3, msg_id="01M8", carrier="acme")
    doc = json.loads(line)
    assert doc["message"] == "submitted 3 parts" and doc["level"] == "INFO"
    assert doc["msg_id"] == "01M8" and doc["carrier"] == "acme" and "\n" not in line


def test_numbers_are_masked_in_the_message_and_in_extra_fields(handler: logging.Handler) -> None:
    doc = json.loads(_emit(handler, "no route for %s", "+351912345678", to="+447700900123"))
    assert doc["message"] == "no route for +351*******78"
    assert doc["to"] == "+447*******23"
    assert "912345678" not in json.dumps(doc)


def test_ids_and_short_digit_runs_are_left_alone(handler: logging.Handler) -> None:
    doc = json.loads(_emit(handler, "receipt for carrier id %s, 12 parts", "288230376293190992"))
    assert doc["message"] == "receipt for carrier id 288230376293190992, 12 parts"


def test_log_format_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(None, env={"SEPTET_LOG_FORMAT": "xml"})
    assert any("log_format" in p for p in info.value.problems)
    assert cfg.load(None, env={"SEPTET_LOG_FORMAT": "json"}).log_format == "json"
