"""LOG_FORMAT=json: one JSON object per line, carrying the context passed with ``extra=``."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from chat import logs
from chat.config import ConfigError, Settings

from .support import server_process

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(Settings.from_env({"LOG_FORMAT": "json"})))
    logger = logging.getLogger("chat.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_room_and_connection_from_extra(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("slow consumer %s", "disconnected", extra={"room_id": "r1", "connection_id": "c9"})
    [entry] = lines(stream)
    assert entry["message"] == "slow consumer disconnected"
    assert (entry["level"], entry["logger"]) == ("INFO", "chat.test_logs")
    assert (entry["room_id"], entry["connection_id"]) == ("r1", "c9")
    assert ISO_UTC.match(str(entry["time"])), entry["time"]
    # Nothing of the LogRecord's own bookkeeping leaks into the object.
    assert set(entry) == {"time", "level", "logger", "message", "room_id", "connection_id"}


def test_exceptions_and_odd_values_stay_on_one_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logger.exception("departure failed", extra={"room_id": "r2", "when": object()})
    assert stream.getvalue().count("\n") == 1
    [entry] = lines(stream)
    assert entry["level"] == "ERROR" and entry["room_id"] == "r2"
    assert "RuntimeError: boom\nsecond line" in str(entry["exception"])
    assert str(entry["when"]).startswith("<object object")


def test_text_is_the_default_and_formats_are_checked() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    assert not isinstance(logs.formatter(Settings.from_env({})), logs.JsonFormatter)
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


async def test_the_server_logs_json_lines() -> None:
    async with server_process(env={"LOG_FORMAT": "json"}) as running:
        serving = [line for line in running.output if "serving on" in line]
    [entry] = [orjson.loads(line) for line in serving]
    assert entry["level"] == "INFO" and entry["logger"] == "chat"
    assert str(entry["message"]).startswith("EphemeralChat serving on http://127.0.0.1:")
    for line in running.output:
        if line.strip():
            orjson.loads(line)  # every line the process wrote is one JSON object
