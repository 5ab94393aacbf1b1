"""gateway.config: defaults, TOML, environment overrides and the all-at-once ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config as cfg
from gateway.errors import ConfigError


def test_embedded_defaults_are_valid() -> None:
    c = cfg.load(None, env={})
    assert c.http.port == 8080 and c.http.max_body_bytes == 1024 * 1024
    assert c.http.backlog >= 1024 and c.store.sync is True and c.simulator.enabled
    assert c.api.idempotency_ttl_hours >= 72


def test_toml_and_env_override(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[http]\nport = 9000\nrequest_timeout = 2\n[store]\npath = "/tmp/x"\n'
                 '[[smpp]]\nname = "vodafone"\nhost = "10.0.0.1"\nport = 2775\n')
    c = cfg.load(f, env={"SEPTET_HTTP__PORT": "9100", "SEPTET_STORE__SYNC": "false",
                         "SEPTET_API__MAX_BATCH": "500", "OTHER": "x"})
    assert c.http.port == 9100 and c.http.request_timeout == 2.0
    assert c.store.path == "/tmp/x" and c.store.sync is False and c.api.max_batch == 500
    assert c.smpp[0].name == "vodafone" and c.smpp[0].host == "10.0.0.1"


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[http]\nport = "eighty"\ncolour = 1\nmax_body_bytes = true\n'
                 '[nonsense]\na = 1\n[[smpp]]\nwindow = "x"\n')
    with pytest.raises(ConfigError) as info:
        cfg.load(f, env={"SEPTET_STORE__SYNC": "maybe", "SEPTET_API__PAGE_SIZE": "ten"})
    problems = "\n".join(info.value.problems)
    for key in ("http.port", "http.colour", "http.max_body_bytes", "nonsense: unknown",
                "smpp[0].window", "store.sync", "api.page_size"):
        assert key in problems, key
    assert len(info.value.problems) == 7


def test_range_checks_after_types() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(None, env={"SEPTET_HTTP__PORT": "70000", "SEPTET_API__IDEMPOTENCY_TTL_HOURS": "1",
                            "SEPTET_HTTP__REQUEST_TIMEOUT": "0"})
    text = str(info.value)
    assert "http.port" in text and "idempotency_ttl_hours" in text and "request_timeout" in text


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        cfg.load(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\n")
    with pytest.raises(ConfigError):
        cfg.load(bad, env={})


def test_callbacks_section_reaches_the_notifier_policy(tmp_path: Path) -> None:
    from gateway.cli import callback_policy

    default = callback_policy(cfg.load(None, env={}).callbacks)
    assert default.batch_size == 1 and default.per_endpoint == 8 and default.max_age == 86_400
    f = tmp_path / "s.toml"
    f.write_text("[callbacks]\nbatch_size = 100\nmax_in_flight_per_endpoint = 16\n"
                 "retry_window_hours = 2\nrequest_timeout = 3\n")
    c = cfg.load(f, env={"SEPTET_CALLBACKS__BREAKER_FAILURES": "9"}).callbacks
    policy = callback_policy(c)
    assert (policy.batch_size, policy.per_endpoint, policy.max_age) == (100, 16, 7200.0)
    assert policy.request_timeout == 3.0 and policy.breaker_failures == 9
    assert policy.scan_limit >= 100 * 16  # read ahead fills every request of an endpoint


def test_callbacks_section_is_range_checked() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(None, env={"SEPTET_CALLBACKS__BATCH_SIZE": "0",
                            "SEPTET_CALLBACKS__MAX_IN_FLIGHT_PER_ENDPOINT": "0",
                            "SEPTET_CALLBACKS__RETRY_WINDOW_HOURS": "-1",
                            "SEPTET_CALLBACKS__MAX_RETRY_DELAY": "1"})
    text = str(info.value)
    for key in ("callbacks.batch_size", "max_in_flight_per_endpoint", "retry_window_hours",
                "max_retry_delay"):
        assert key in text, key


def test_in_doubt_policy_and_carrier_id_type_are_configured_and_checked(tmp_path: Path) -> None:
    from gateway.cli import carrier_id_types

    f = tmp_path / "s.toml"
    f.write_text('[core]\nin_doubt = "mark_unknown"\n'
                 '[[smpp]]\nname = "vodafone"\nid_type = "hex-submit"\n')
    c = cfg.load(f, env={})
    assert c.core.in_doubt == "mark_unknown"
    assert carrier_id_types(c) == {"vodafone": "hex-submit", "simulator": "decimal"}

    f.write_text('[core]\nin_doubt = "maybe"\n[[smpp]]\nname = "vodafone"\nid_type = "octal"\n')
    with pytest.raises(ConfigError) as info:
        cfg.load(f, env={})
    problems = "\n".join(info.value.problems)
    assert "core.in_doubt" in problems and "smpp[vodafone].id_type" in problems


def test_streamed_body_limits_are_configured_and_checked() -> None:
    c = cfg.load(None, env={"SEPTET_HTTP__MAX_STREAM_BYTES": "2147483648",
                            "SEPTET_HTTP__BODY_IDLE_TIMEOUT": "12.5"})
    assert (c.http.max_stream_bytes, c.http.body_idle_timeout) == (2 * 1024**3, 12.5)
    assert cfg.load(None, env={}).http.max_stream_bytes == 1024**3  # 1 GiB by default
    with pytest.raises(ConfigError) as info:
        cfg.load(None, env={"SEPTET_HTTP__MAX_STREAM_BYTES": "0",
                            "SEPTET_HTTP__BODY_IDLE_TIMEOUT": "0"})
    assert "http.max_stream_bytes" in str(info.value)
    assert "http.body_idle_timeout" in str(info.value)


def test_store_writer_auto_takes_the_second_cpu_when_there_is_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = cfg.load(None, env={})
    assert c.store.writer == "auto"
    monkeypatch.setattr(cfg.os, "sched_getaffinity", lambda pid: {0, 1})
    assert c.store.resolved_writer == "process"
    monkeypatch.setattr(cfg.os, "sched_getaffinity", lambda pid: {3})
    assert c.store.resolved_writer == "thread"
    pinned = cfg.load(None, env={"SEPTET_STORE__WRITER": "thread"})
    monkeypatch.setattr(cfg.os, "sched_getaffinity", lambda pid: {0, 1})
    assert pinned.store.resolved_writer == "thread"
    with pytest.raises(ConfigError, match="store.writer: must be auto, thread or process"):
        cfg.load(None, env={"SEPTET_STORE__WRITER": "fork"})
