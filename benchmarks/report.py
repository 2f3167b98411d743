"""One JSON line per result, tagged so lines from many runs can be told apart later."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    line = {
        "label": args.label,
        "urls": args.urls,
        "workers": args.workers,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **result,
    }
    if result["scenario"] in ("fanout", "rooms", "ramp", "slow"):
        line["schedule"] = "lockstep" if args.lockstep else "spread"
    if args.extra:
        line.update(json.loads(args.extra))
    print(json.dumps(line), flush=True)
    sys.stdout.flush()
