"""Settings from the document's environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.config import ConfigError, Settings, parse_cluster_nodes, read_env_file


def test_defaults_serve_on_the_memory_backend() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 8000, "INFO")
    assert not settings.uses_redis
    assert settings.generated_secret and len(settings.secret_key) >= 32
    assert Settings.from_env({}).secret_key != settings.secret_key


def test_document_variables_are_read() -> None:
    settings = Settings.from_env(
        {"HOST": "127.0.0.1", "PORT": "9000", "DOMAIN": "chat.example.org", "LOG_LEVEL": "debug",
         "LOG_FILE": "/tmp/x.log", "REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw",
         "SECRET_KEY": "k"}
    )
    assert (settings.host, settings.port, settings.domain) == ("127.0.0.1", 9000, "chat.example.org")
    assert (settings.log_level, settings.log_file) == ("DEBUG", "/tmp/x.log")
    assert settings.uses_redis and settings.redis_dsn == "redis://:pw@cache:6380/0"
    assert settings.secret_key == "k" and not settings.generated_secret
    assert Settings.from_env({"REDIS_URL": "redis://r:1/2"}).redis_dsn == "redis://r:1/2"


def test_cluster_nodes_select_a_redis_cluster() -> None:
    nodes = "10.0.0.1:7000, cache-2:7001,[::1]:7002"
    settings = Settings.from_env({"REDIS_CLUSTER_NODES": nodes, "REDIS_PASSWORD": "pw"})
    assert settings.uses_redis and settings.redis_password == "pw"
    assert parse_cluster_nodes(settings.redis_cluster_nodes) == [("10.0.0.1", 7000), ("cache-2", 7001), ("::1", 7002)]
    for bad in ("cache", "cache:port", ":7000"):
        with pytest.raises(ConfigError, match="REDIS_CLUSTER_NODES"):
            Settings.from_env({"REDIS_CLUSTER_NODES": bad})
    # One Redis or a cluster, not both at once.
    with pytest.raises(ConfigError, match="REDIS_CLUSTER_NODES"):
        Settings.from_env({"REDIS_CLUSTER_NODES": "cache:7000", "REDIS_URL": "redis://r:1/0"})


def test_history_is_on_by_default_and_can_be_turned_off() -> None:
    assert (Settings.from_env({}).history_size, Settings.from_env({}).history_bytes) == (50, 262_144)
    off = Settings.from_env({"HISTORY_SIZE": "0", "HISTORY_BYTES": "1000"})
    assert (off.history_size, off.history_bytes) == (0, 1000)


def test_slow_consumers_are_bounded_in_bytes_by_default() -> None:
    defaults = Settings.from_env({})
    assert (defaults.outbox_bytes, defaults.outbox_total_bytes) == (1_048_576, 268_435_456)
    env = {"OUTBOX_BYTES": "65536", "OUTBOX_TOTAL_BYTES": "65536"}
    assert (Settings.from_env(env).outbox_bytes, Settings.from_env(env).outbox_total_bytes) == (65_536, 65_536)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PORT": "x"}, "PORT must be a number"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"WS_PING_SECONDS": "-1"}, "WS_PING_SECONDS must be a finite number, zero or more"),
        ({"MAX_CONNECTIONS": "-5"}, "MAX_CONNECTIONS must be"),
        ({"CLOSE_GRACE_SECONDS": "nan"}, "CLOSE_GRACE_SECONDS must be"),
        ({"SHUTDOWN_GRACE_SECONDS": "inf"}, "SHUTDOWN_GRACE_SECONDS must be"),
        ({"HISTORY_SIZE": "1001"}, "HISTORY_SIZE must be at most 1000"),
        ({"HISTORY_SIZE": "-1"}, "HISTORY_SIZE must be"),
        ({"HISTORY_BYTES": "lots"}, "HISTORY_BYTES must be a number"),
        ({"OUTBOX_BYTES": "-1"}, "OUTBOX_BYTES must be"),
        ({"OUTBOX_BYTES": "1000"}, "OUTBOX_BYTES must be at least 65536"),
        ({"OUTBOX_TOTAL_BYTES": "1mb"}, "OUTBOX_TOTAL_BYTES must be a number"),
        ({"OUTBOX_BYTES": "2000000", "OUTBOX_TOTAL_BYTES": "1000000"}, "OUTBOX_TOTAL_BYTES must be at least OUTBOX_BY"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nPORT=9100\nexport DOMAIN='chat.local'\n\nLOG_LEVEL=\"WARNING\"\n")
    assert read_env_file(env_file) == {"PORT": "9100", "DOMAIN": "chat.local", "LOG_LEVEL": "WARNING"}
    monkeypatch.setenv("PORT", "9200")
    settings = Settings.from_env(env_file=str(env_file))
    assert (settings.port, settings.domain) == (9200, "chat.local")
