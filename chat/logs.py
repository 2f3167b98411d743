"""Logging set-up from LOG_LEVEL, LOG_FILE and LOG_FORMAT.

``LOG_FORMAT=text`` (the default) is one readable line per record. ``LOG_FORMAT=json`` is
one JSON object per line, for log collectors: ``time``, ``level``, ``logger``, ``message``,
``exception`` when there is one, and every field passed with ``extra=`` (``room_id``,
``connection_id``, ...) as a top-level key, so a room's whole story is one filter away.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; whatever else a record carries came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values stay escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold is still logged rather than lost
        # (or worse, raising inside the logging call of an error path).
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else logging.Formatter(FORMAT)


def configure(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file:
        path = Path(settings.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    chosen = formatter(settings)
    for handler in handlers:
        handler.setFormatter(chosen)
    logging.basicConfig(level=settings.log_level, handlers=handlers, force=True)
