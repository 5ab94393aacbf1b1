"""The [shaping] section: checked at load with every bad key named, and handed by `serve` to
the rate limiter (per-account and per-connector limits, campaigns, the gateway's route)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from actors import rate_limiter
from actors.shaping import CampaignRules, Limit
from gateway import cli
from gateway import config as cfg
from gateway.errors import ConfigError

TOML = """
[http]
prot = 1

[shaping.default_account]
limit = { rate = 50 }

[shaping.accounts.acme]
limit = { rate = 10, brust = 3 }
window = { tz = "Mars/Olympus" }

[shaping.connectors.simulator]
limit = { rate = -1 }

[shaping.campaigns.sale]
per_minute = 60
"""


def test_every_bad_shaping_key_is_named_in_the_config_error(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML)
    with pytest.raises(ConfigError) as info:
        cfg.load(f, env={"SEPTET_SHAPING__MAX_HELDD": "5"})
    text = str(info.value)
    for name in ("http.prot", "shaping.accounts.acme.limit.brust",
                 "shaping.accounts.acme.window", "shaping.connectors.simulator.limit",
                 "shaping.max_heldd"):
        assert name in text, name


def test_shaping_from_toml_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(TOML.replace("prot = 1", "port = 1").replace(", brust = 3", "")
                 .replace('tz = "Mars/Olympus"', 'tz = "UTC", start = "09:00"')
                 .replace("rate = -1", "rate = 200"))
    c = cfg.load(f, env={"SEPTET_SHAPING__CONNECTORS__SIMULATOR__LIMIT": "{ rate = 5, burst = 2 }",
                         "SEPTET_SHAPING__MAX_HELD": "1000"})
    live = {"spring": CampaignRules(per_minute=1)}
    rules = cfg.shaping_rules(c, campaigns=live)
    assert rules.connectors["simulator"].limit == Limit(5, 2)
    assert rules.accounts["acme"].limit == Limit(10)
    assert rules.default_account.limit == Limit(50) and rules.max_held == 1000
    assert rules.campaigns["spring"] is live["spring"]  # live campaign rules...
    assert rules.campaigns["sale"].per_minute == 60  # ...and the file's
    assert cfg.shaping_rules(cfg.load(None, env={})).connectors == {}


@pytest.mark.slow
async def test_serve_hands_the_configured_limits_to_the_rate_limiter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = cfg.load(None, env={
        "SEPTET_STORE__PATH": str(tmp_path / "db"), "SEPTET_HTTP__PORT": "0",
        "SEPTET_STORE__SYNC": "false",
        "SEPTET_SHAPING__CONNECTORS__SIMULATOR__LIMIT": "{ rate = 5 }",
        "SEPTET_SHAPING__ACCOUNTS__DEV__PER_SENDER": "{ rate = 2 }"})
    seen: list[Any] = []
    real = rate_limiter.run

    async def spy(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs["rules"])
        await real(*args, **kwargs)

    monkeypatch.setattr(rate_limiter, "run", spy)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(cli.serve, config))
        nursery.cancel_scope.cancel()
    (rules,) = seen
    assert rules.connectors["simulator"].limit == Limit(5)
    assert rules.accounts["dev"].per_sender == Limit(2)
    assert rules.route("+351912345678") == "simulator"  # charged to the connector that carries it
