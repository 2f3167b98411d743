"""One Settings object, read from environment variables (and an optional ``.env`` file).

Every limit and default of the server lives here, so there is one place to look them up.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# Chat messages a room keeps for newcomers and resumes (0: none), and at most this many
# bytes of them; a longer history costs Redis memory and every newcomer's replay.
DEFAULT_HISTORY_SIZE = 50
MAX_HISTORY_SIZE = 1_000
DEFAULT_HISTORY_BYTES = 262_144
# Part of the protocol, not tunable: a member's typing frames reach the others at most once
# per TYPING_INTERVAL_SECONDS, its read receipts at most once per READ_RECEIPT_INTERVAL_SECONDS.
TYPING_INTERVAL_SECONDS = 2.0
READ_RECEIPT_INTERVAL_SECONDS = 1.0
# Least OUTBOX_BYTES: one queued write's worth of frames (chat.nursery.FAN_OUT_BYTES), so a
# member a single write behind is not closed for it.
MIN_OUTBOX_BYTES = 65_536


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    # Host (and port) put into ws_url; empty means "the Host header the client used".
    domain: str = ""
    log_level: str = "INFO"
    log_file: str = ""
    # "text" for people reading a terminal, "json" (one object a line) for log collectors.
    log_format: str = "text"

    redis_url: str = ""
    redis_host: str = ""
    redis_port: int = 6379
    redis_password: str = ""
    # Seed nodes of a Redis Cluster, host:port,host:port,... (with REDIS_PASSWORD when set):
    # the instances share the cluster instead of one Redis (REDIS_URL / REDIS_HOST).
    redis_cluster_nodes: str = ""

    # HMAC key for room tokens; generated per process when unset (single instance only).
    secret_key: str = ""

    default_expiry_seconds: int = 600
    min_expiry_seconds: int = 1
    max_expiry_seconds: int = 86_400
    default_max_users: int = 20
    max_users_limit: int = 1_000
    message_max_chars: int = 4_000
    # Hard cap on one WebSocket frame; larger frames close the socket with 1009.
    frame_max_bytes: int = 65_536

    # Chat messages one connection may send: a steady rate, a burst, and how many refused
    # messages (beyond those paid back by accepted ones) count as a flood (close 1008).
    messages_per_second: float = 30.0
    message_burst: int = 300
    flood_debt: int = 600
    # Per client address and minute; over it, 429 with Retry-After. Shared via Redis.
    rooms_per_minute: int = 300
    joins_per_minute: int = 600
    # Trust this many proxies' X-Forwarded-For / X-Forwarded-Proto (0: none; nginx in front: 1).
    trusted_proxy_hops: int = 0
    # Capacity of one instance: open WebSockets, and rooms with members on it.
    max_connections: int = 10_000
    max_live_rooms: int = 5_000
    # Comma-separated origins allowed to call the API from a browser (CORS) and to open
    # WebSockets; empty means this server's own origin only. "*" allows any.
    allowed_origins: str = ""

    # Frames, and bytes, a connection may have queued before it counts as a slow consumer.
    outbox_frames: int = 256
    outbox_bytes: int = 1_048_576
    # Bytes queued for all connections of one instance; past it, the connections furthest
    # behind are closed as slow consumers.
    outbox_total_bytes: int = 268_435_456
    # How long a closing socket gets to flush its last frames before it is dropped.
    close_grace_seconds: float = 5.0
    # How long a connection dropped as too slow may sit unread before it is cut: if its
    # peer reads again by then, it still finds the close frame with the reason.
    stalled_grace_seconds: float = 30.0
    # Seconds between WebSocket pings, so half-open connections lose their seat.
    ws_ping_seconds: float = 20.0
    # Seconds Hypercorn waits for open requests after a shutdown signal.
    shutdown_grace_seconds: float = 5.0
    # With Redis: how long the members of an instance that died (kill -9, lost host) may
    # linger in presence before another instance says user_offline for them.
    presence_timeout_seconds: float = 30.0
    # How long a socket lost without a goodbye (network gone, client killed, ping timeout)
    # keeps its member's seat for a resume; 0: it departs at once.
    resume_grace_seconds: float = 10.0
    # Messages each room keeps (0: no history), and the bytes they may take at most.
    history_size: int = DEFAULT_HISTORY_SIZE
    history_bytes: int = DEFAULT_HISTORY_BYTES

    generated_secret: bool = field(default=False, compare=False)

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url or self.redis_host or self.redis_cluster_nodes)

    @property
    def redis_dsn(self) -> str:
        if self.redis_url:
            return self.redis_url
        auth = f":{self.redis_password}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, env_file: str = ".env") -> Settings:
        """Settings from ``env`` (default: the process environment over ``.env``)."""
        if env is None:
            merged = dict(read_env_file(Path(env_file)))
            merged.update(os.environ)
            env = merged
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "generated_secret":
                continue
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(cls, f.name)))
        if "log_level" in values:
            values["log_level"] = values["log_level"].upper()
            if values["log_level"] not in LOG_LEVELS:
                raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if "log_format" in values:
            values["log_format"] = values["log_format"].lower()
            if values["log_format"] not in LOG_FORMATS:
                raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        if values.get("history_size", 0) > MAX_HISTORY_SIZE:
            raise ConfigError(f"HISTORY_SIZE must be at most {MAX_HISTORY_SIZE} (0 turns history off)")
        outbox_bytes = values.get("outbox_bytes", cls.outbox_bytes)
        if outbox_bytes < MIN_OUTBOX_BYTES:
            raise ConfigError(f"OUTBOX_BYTES must be at least {MIN_OUTBOX_BYTES} (one write's worth of frames)")
        if values.get("outbox_total_bytes", cls.outbox_total_bytes) < outbox_bytes:
            raise ConfigError(f"OUTBOX_TOTAL_BYTES must be at least OUTBOX_BYTES ({outbox_bytes})")
        if values.get("redis_cluster_nodes"):
            if values.get("redis_url") or values.get("redis_host"):
                raise ConfigError("REDIS_CLUSTER_NODES names a cluster: leave REDIS_URL and REDIS_HOST unset")
            try:
                parse_cluster_nodes(values["redis_cluster_nodes"])
            except ValueError as error:
                raise ConfigError(f"REDIS_CLUSTER_NODES: {error}") from None
        if not values.get("secret_key"):
            values["secret_key"] = secrets.token_urlsafe(32)
            values["generated_secret"] = True
        return cls(**values)


def parse_cluster_nodes(nodes: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (REDIS_CLUSTER_NODES) as (host, port) pairs."""
    seeds: list[tuple[str, int]] = []
    for entry in filter(None, (part.strip() for part in nodes.split(","))):
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"a cluster node is host:port, got {entry!r}")
        seeds.append((host.strip("[]"), int(port)))
    if not seeds:
        raise ValueError("no cluster node given")
    return seeds


def _convert(name: str, raw: str, kind: type) -> Any:
    if kind not in (int, float):
        return raw
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name.upper()} must be a number, got {raw!r}") from None
    # Every number here is a count, a size, a port or a duration: none can be negative.
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name.upper()} must be a finite number, zero or more, got {raw!r}")
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments and blank lines are skipped."""
    if not path.is_file():
        return {}
    result: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return result
