"""Build :class:`ShapingRules` from plain data (a TOML table, JSON), checking every key.

The gateway reads its configuration file; this module only turns the ``[shaping]`` table it
found into rules, so the schema lives beside the rules it describes (docs/shaping.md shows
it). Every problem is collected and reported at once.

Must not import: trio, lmdb, httpx, gateway, adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TypeVar

from actors._shaping_bucket import Adaptive
from actors._shaping_rules import (
    AccountRules,
    CampaignRules,
    ConnectorRules,
    Limit,
    ShapingRules,
    single_connector,
)
from actors._shaping_window import SendWindow

_T = TypeVar("_T")


class ShapingConfigError(ValueError):
    """Bad shaping configuration; ``problems`` lists every one as ``"path: reason"``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def table(self, path: str, value: object) -> Mapping[str, object]:
        if isinstance(value, Mapping):
            return value
        self.problems.append(f"{path}: expected a table")
        return {}

    def build(self, path: str, kind: Callable[..., _T], value: object,
              convert: Mapping[str, Callable[[str, object], object]] | None = None) -> _T | None:
        """``kind(**table)`` with unknown keys and constructor errors reported under ``path``."""
        data = dict(self.table(path, value))
        known = {f.name for f in fields(kind)}  # type: ignore[arg-type]
        for key in sorted(set(data) - known):
            self.problems.append(f"{path}.{key}: unknown key")
            del data[key]
        for key, fn in (convert or {}).items():
            if key in data:
                data[key] = fn(f"{path}.{key}", data[key])
        try:
            return kind(**data)
        except Exception as exc:  # noqa: BLE001 - any constructor complaint is a config problem
            self.problems.append(f"{path}: {exc}")
            return None

    def limit(self, path: str, value: object) -> Limit | None:
        return self.build(path, Limit, value)

    def limits(self, path: str, value: object) -> dict[str, Limit]:
        out = {}
        for key, v in self.table(path, value).items():
            lim = self.limit(f"{path}.{key}", v)
            if lim is not None:
                out[key] = lim
        return out

    def window(self, path: str, value: object) -> SendWindow | None:
        def days(_: str, v: object) -> object:
            return tuple(v) if isinstance(v, list | tuple) else v
        return self.build(path, SendWindow, value, {"days": days})

    def adaptive(self, path: str, value: object) -> Adaptive | None:
        return self.build(path, Adaptive, value)

    def account(self, path: str, value: object) -> AccountRules | None:
        return self.build(path, AccountRules, value, {
            "limit": self.limit, "per_sender": self.limit, "senders": self.limits,
            "prefixes": self.limits, "window": self.window})

    def connector(self, path: str, value: object) -> ConnectorRules | None:
        return self.build(path, ConnectorRules, value, {
            "limit": self.limit, "per_sender": self.limit, "prefixes": self.limits,
            "adaptive": self.adaptive})

    def campaign(self, path: str, value: object) -> CampaignRules | None:
        return self.build(path, CampaignRules, value, {"window": self.window})


def rules_from_mapping(
    data: Mapping[str, object],
    *,
    route: Callable[[str], str] = single_connector,
    campaigns: Mapping[str, CampaignRules] | None = None,
) -> ShapingRules:
    """Rules from a ``[shaping]`` table: ``accounts``, ``default_account``, ``connectors``,
    ``default_connector``, ``campaigns``, ``max_held``, ``pause_recheck`` (see
    docs/shaping.md).

    Args:
        data: the table, as ``tomllib`` or ``json`` gives it.
        route: destination -> connector name (the gateway derives it from its routes).
        campaigns: campaign rules kept elsewhere (the campaign API); overrides ``campaigns``.

    Raises:
        ShapingConfigError: listing every bad key and value.
    """
    r = _Reader()
    known = {"accounts", "default_account", "connectors", "default_connector", "campaigns",
             "max_held", "pause_recheck"}
    for key in sorted(set(data) - known):
        r.problems.append(f"shaping.{key}: unknown key")
    kwargs: dict[str, object] = {"route": route}
    for name, build in (("accounts", r.account), ("connectors", r.connector),
                        ("campaigns", r.campaign)):
        table = {k: build(f"shaping.{name}.{k}", v)
                 for k, v in r.table(f"shaping.{name}", data.get(name, {})).items()}
        kwargs[name] = {k: v for k, v in table.items() if v is not None}
    for name, build in (("default_account", r.account), ("default_connector", r.connector)):
        if name in data:
            kwargs[name] = build(f"shaping.{name}", data[name])
    if campaigns is not None:
        kwargs["campaigns"] = campaigns
    max_held = data.get("max_held", 100_000)
    if not isinstance(max_held, int) or isinstance(max_held, bool) or max_held < 1:
        r.problems.append("shaping.max_held: expected a positive integer")
    kwargs["max_held"] = max_held
    recheck = data.get("pause_recheck", 30.0)
    if isinstance(recheck, bool) or not isinstance(recheck, int | float) or not recheck > 0:
        r.problems.append("shaping.pause_recheck: expected a number of seconds > 0")
    else:
        kwargs["pause_recheck"] = float(recheck)
    if r.problems:
        raise ShapingConfigError(r.problems)
    return ShapingRules(**kwargs)  # type: ignore[arg-type]
