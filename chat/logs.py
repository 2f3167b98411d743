"""Logging set-up from LOG_LEVEL and LOG_FILE."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file:
        path = Path(settings.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    logging.basicConfig(level=settings.log_level, format=FORMAT, handlers=handlers, force=True)
