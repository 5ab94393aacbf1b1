"""The gateway's configuration: one tree of frozen dataclasses, loaded once and validated eagerly.

Sources, later ones winning: the embedded defaults below, a TOML file (``septet serve --config
septet.toml``), then environment variables ``SEPTET_<SECTION>__<KEY>`` (double underscore
between levels, e.g. ``SEPTET_HTTP__PORT=9000``, ``SEPTET_STORE__SYNC=false``). Every unknown
key, wrong type and out-of-range value is collected, and :class:`gateway.errors.ConfigError`
names them all at once rather than one per restart.

Actors receive only their own values as keyword arguments, never this object (STYLE.md §8).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from actors.correlation import ID_TYPES
from gateway.errors import ConfigError
from gateway.optouts import DEFAULT_START, DEFAULT_STOP, REFRESH_SECONDS, Keywords

if typing.TYPE_CHECKING:
    from actors.shaping import CampaignRules, ShapingRules

ENV_PREFIX: Final = "SEPTET_"
MIB: Final = 1024 * 1024
MAX_KEY_INACTIVITY_DAYS: Final = 3650  # ten years: beyond it, say 0 (never)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP ingress server and its limits (each one tested in tests/gateway/http)."""

    host: str = "127.0.0.1"
    port: int = 8080
    backlog: int = 1024  # well above expected concurrency; Kannel's 10 drops connections
    reuse_port: bool = False
    max_connections: int = 4096  # beyond it a new connection gets 503 + Retry-After and is closed
    max_body_bytes: int = MIB
    max_header_count: int = 64
    max_header_bytes: int = 16 * 1024  # request line + all headers
    request_timeout: float = 10.0  # first byte of a request to its last body byte
    idle_timeout: float = 30.0  # keep-alive connection with no request in progress
    write_timeout: float = 10.0  # a client that does not read its answers is cut off
    max_in_flight: int = 2048  # requests being handled at once before 503
    retry_after: int = 1  # seconds, in 503 answers
    # routes that read their body as a stream (campaign recipient uploads): their own limit,
    # and instead of request_timeout for the body, each receive must come within this
    max_stream_bytes: int = 1024 * MIB
    body_idle_timeout: float = 30.0

    def check(self) -> list[str]:
        errs = []
        if not 0 <= self.port <= 65535:
            errs.append(f"http.port: {self.port} is not a TCP port")
        for name in ("backlog", "max_connections", "max_body_bytes", "max_header_count",
                     "max_header_bytes", "max_in_flight", "max_stream_bytes"):
            if getattr(self, name) < 1:
                errs.append(f"http.{name}: must be at least 1")
        for name in ("request_timeout", "idle_timeout", "write_timeout", "body_idle_timeout"):
            if not getattr(self, name) > 0:
                errs.append(f"http.{name}: must be a positive number of seconds")
        return errs


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """API v1 behaviour."""

    max_batch: int = 1000
    idempotency_ttl_hours: float = 96.0  # the issue asks for at least 72 h
    default_policy: str = "transliterate"
    default_max_parts: int = 5
    page_size: int = 100
    max_page_size: int = 1000
    max_scan: int = 20_000  # records examined per history page when filters skip many
    phone_cache_size: int = 200_000
    callbacks_allow_loopback: bool = False  # callback_url may point at 127.0.0.0/8 (dev only)
    callbacks_allow_private: bool = False  # ... or at RFC 1918 / ULA / CGNAT addresses
    # An API key not used for this many days (UTC days) is refused with 401 "API key
    # expired"; 0 = keys never expire (gateway.accounts, docs/api.md "API keys")
    key_inactivity_days: int = 60

    def check(self) -> list[str]:
        errs = []
        if not 0 <= self.key_inactivity_days <= MAX_KEY_INACTIVITY_DAYS:
            errs.append("api.key_inactivity_days: must be 0 (keys never expire) or between 1 "
                        f"and {MAX_KEY_INACTIVITY_DAYS} days")
        if not 1 <= self.max_batch <= 10_000:
            errs.append("api.max_batch: must be between 1 and 10000")
        if self.idempotency_ttl_hours < 72:
            errs.append("api.idempotency_ttl_hours: must be at least 72")
        if self.default_policy not in POLICIES:
            errs.append(f"api.default_policy: must be one of {', '.join(POLICIES)}")
        if not 1 <= self.default_max_parts <= 255:
            errs.append("api.default_max_parts: must be between 1 and 255")
        if not 1 <= self.page_size <= self.max_page_size:
            errs.append("api.page_size: must be between 1 and api.max_page_size")
        return errs


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The LMDB environment."""

    path: str = "./var/septet"
    sync: bool = True
    map_size: int = 1024 * MIB
    # final messages accepted more than this many days ago are removed (gateway.retention);
    # 0 keeps every message forever
    retention_days: int = 90
    # who runs the pipeline's hot writes: "thread" (the gateway's own writer thread),
    # "process" (a writer process on the same LMDB environment: a second core; docs/core.md)
    # or "auto": process when the gateway may run on two CPUs or more (resolved_writer)
    writer: str = "auto"

    @property
    def resolved_writer(self) -> str:
        """``writer`` with "auto" decided: "process" where this process may use two CPUs or
        more (its affinity mask, so a container's CPU set counts), else "thread". Measured on
        2 cores (bench/RESULTS.md): process mode carries the writes on the second core."""
        if self.writer != "auto":
            return self.writer
        return "process" if len(os.sched_getaffinity(0)) >= 2 else "thread"

    def check(self) -> list[str]:
        errs = [] if self.map_size >= MIB else ["store.map_size: must be at least 1 MiB"]
        if self.retention_days < 0:
            errs.append("store.retention_days: must be 0 (keep forever) or a number of days")
        if self.writer not in ("auto", "thread", "process"):
            errs.append("store.writer: must be auto, thread or process")
        return errs


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The built-in SMSC simulator, run in-process as the default carrier."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    system_id: str = "septet"
    password: str = "septet"
    delivery_delay: float = 0.5
    # Handsets (submit destinations) that answer every message with ``mo_reply`` as a
    # mobile-originated message to its sender (docs/carriers.md); "" or [] for none.
    mo_reply: str = "echo"
    mo_numbers: tuple[str, ...] = ("+351910000000",)

    def check(self) -> list[str]:
        errs = [] if 0 <= self.port <= 65535 else [f"simulator.port: {self.port} is not a TCP port"]
        errs += [f"simulator.mo_numbers[{i}]: {n!r} is not a number (+ and digits)"
                 for i, n in enumerate(self.mo_numbers) if not _is_number(n)]
        return errs


@dataclass(frozen=True, slots=True)
class SmppConnectorConfig:
    """One SMPP carrier connection (``[[smpp]]`` tables)."""

    name: str = ""
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    window: int = 64
    packed_gsm7: bool = False
    concat: str = "udh"
    # How the carrier writes message ids (actors.correlation.ID_TYPES; Kannel's msg-id-type):
    # "auto" guesses per id, which is ambiguous for digit-only ids (is "130" decimal 130 or
    # hex 0x130?) and can match an early receipt to the wrong message; set it per carrier.
    id_type: str = "auto"

    def check(self) -> list[str]:
        errs = []
        if not self.name:
            errs.append("smpp.name: every connector needs a name")
        if self.concat not in ("udh", "sar"):
            errs.append(f"smpp[{self.name}].concat: must be udh or sar")
        if self.id_type not in ID_TYPES:
            errs.append(f"smpp[{self.name}].id_type: must be one of {', '.join(ID_TYPES)}")
        return errs


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The pipeline (docs/core.md)."""

    # What recovery does with a part that was in flight when the process died:
    # "resend" (at-least-once; the carrier may get it twice) or "mark_unknown" (NOT_SENT in_doubt).
    in_doubt: str = "resend"

    def check(self) -> list[str]:
        if self.in_doubt in ("resend", "mark_unknown"):
            return []
        return ["core.in_doubt: must be resend or mark_unknown"]


@dataclass(frozen=True, slots=True)
class HttpProviderConnectorConfig:
    """One HTTP provider (``[[http_providers]]`` tables); see adapters.http_provider.

    Its delivery receipts are accepted at ``POST /v1/receipts/<name>``, authenticated by
    ``receipt_token`` (sent as ``Authorization: Bearer <token>``; required). Its inbound (MO)
    messages are accepted at ``POST /v1/inbound/<name>`` (and, as query parameters, at
    ``GET /v1/inbound/<name>``), authenticated by ``inbound_token``, or by ``receipt_token``
    when that is "" (providers often have one webhook secret), as a bearer token or as the
    query parameter ``inbound_token_param`` names, and read at the ``inbound_*_path`` paths
    (adapters.http_inbound).
    """

    name: str = ""
    url: str = ""
    method: str = "POST"
    body_format: str = "json"
    headers: tuple[tuple[str, ...], ...] = ()
    fields: tuple[tuple[str, ...], ...] = (("to", "to"), ("from", "sender"), ("text", "text"))
    static_fields: tuple[tuple[str, ...], ...] = ()
    id_path: str = "id"
    error_path: str = ""
    timeout: float = 10.0
    concurrency: int = 32
    receipt_token: str = ""
    receipt_list_path: str = ""
    receipt_id_path: str = "id"
    receipt_status_path: str = "status"
    receipt_error_path: str = "error_code"
    receipt_done_path: str = ""
    inbound_token: str = ""  # "" = receipt_token
    inbound_list_path: str = ""
    inbound_from_path: str = "from"
    inbound_to_path: str = "to"
    inbound_text_path: str = "text"
    inbound_id_path: str = ""  # the provider's message id: set it to drop webhook retries
    # a query parameter that may carry inbound_token when the provider cannot send an
    # Authorization header ("" = header only); less safe: URLs are logged along the way
    inbound_token_param: str = ""
    inbound_time_path: str = ""
    # a message sent part by part (Vonage: "concat-ref", "concat-total", "concat-part"): the
    # store joins the parts; all three or none ("" = every message is whole)
    inbound_concat_ref_path: str = ""
    inbound_concat_total_path: str = ""
    inbound_concat_part_path: str = ""

    def check(self) -> list[str]:
        errs = []
        where = f"http_providers[{self.name or '?'}]"
        if not self.name:
            errs.append("http_providers.name: every provider needs a name")
        if not self.url.startswith(("http://", "https://")):
            errs.append(f"{where}.url: an http(s) URL is required")
        if self.body_format not in ("json", "form"):
            errs.append(f"{where}.body_format: json or form")
        if len(self.receipt_token) < 16:
            errs.append(f"{where}.receipt_token: at least 16 characters (receipts are refused "
                        "without it)")
        if self.inbound_token and len(self.inbound_token) < 16:
            errs.append(f"{where}.inbound_token: at least 16 characters, or \"\" to use "
                        "receipt_token")
        param = self.inbound_token_param
        if param and not (param.isascii() and param.replace("_", "a").replace("-", "a").isalnum()
                          and len(param) <= 64):
            errs.append(f"{where}.inbound_token_param: letters, digits, - and _ (at most 64)")
        if param and param in (self.inbound_from_path, self.inbound_to_path,
                               self.inbound_text_path, self.inbound_id_path,
                               self.inbound_time_path, *self._concat_paths()):
            errs.append(f"{where}.inbound_token_param: must not be a field a message is read "
                        "from (the token would be stored)")
        for name in ("inbound_from_path", "inbound_to_path", "inbound_text_path"):
            if not getattr(self, name):
                errs.append(f"{where}.{name}: required (a dotted path into each message)")
        concat = self._concat_paths()
        if any(concat) and not all(concat):
            errs.append(f"{where}.inbound_concat_ref_path, inbound_concat_total_path, "
                        "inbound_concat_part_path: set all three or none (a part needs its "
                        "reference, total and number)")
        for name in ("headers", "fields", "static_fields"):
            if any(len(pair) != 2 for pair in getattr(self, name)):
                errs.append(f"{where}.{name}: a list of [name, value] pairs")
        return errs

    def _concat_paths(self) -> tuple[str, str, str]:
        return (self.inbound_concat_ref_path, self.inbound_concat_total_path,
                self.inbound_concat_part_path)


@dataclass(frozen=True, slots=True)
class CallbacksConfig:
    """Status callbacks (actors/notifier.py; docs/callbacks.md explains each setting)."""

    batch_size: int = 1  # events per request: 1 = one JSON object (Standard Webhooks), >1 = arrays
    max_in_flight_per_endpoint: int = 8  # requests in flight to one scheme://host:port
    max_in_flight: int = 256  # requests in flight overall
    retry_window_hours: float = 24.0  # retry this long after the first attempt, then dead-letter
    initial_retry_delay: float = 2.0  # seconds before the first retry; doubles per attempt
    max_retry_delay: float = 3600.0  # cap on one wait between attempts
    request_timeout: float = 10.0  # deadline of one callback request
    breaker_failures: int = 5  # consecutive failures that pause an endpoint
    breaker_cooldown: float = 30.0  # first pause; doubles per failed probe, up to 10 min

    def check(self) -> list[str]:
        errs = []
        if not 1 <= self.batch_size <= 1000:
            errs.append("callbacks.batch_size: must be between 1 and 1000")
        for name in ("max_in_flight_per_endpoint", "max_in_flight", "breaker_failures"):
            if getattr(self, name) < 1:
                errs.append(f"callbacks.{name}: must be at least 1")
        for name in ("retry_window_hours", "initial_retry_delay", "request_timeout",
                     "breaker_cooldown"):
            if not getattr(self, name) > 0:
                errs.append(f"callbacks.{name}: must be a positive number")
        if self.max_retry_delay < self.initial_retry_delay:
            errs.append("callbacks.max_retry_delay: must be at least initial_retry_delay")
        return errs


@dataclass(frozen=True, slots=True)
class DevConfig:
    """Conveniences for ``make serve`` on a fresh clone."""

    create_account: bool = True  # create the dev account (and print its key) when none exists
    account: str = "dev"
    # With create_account: inbound messages to this number go to the dev account, unless an
    # [[inbound]] route names it ("" for none).
    inbound_number: str = "+351912000000"

    def check(self) -> list[str]:
        if self.inbound_number and not _is_number(self.inbound_number):
            return ["dev.inbound_number: not a number (+ and digits)"]
        return []


@dataclass(frozen=True, slots=True)
class InboundRouteConfig:
    """``[[inbound]]``: mobile-originated messages to ``number`` belong to ``account``."""

    number: str = ""
    account: str = ""

    def check(self, index: int) -> list[str]:
        errs = []
        if not _is_number(self.number):
            errs.append(f"inbound[{index}].number: {self.number!r} is not a number "
                        "(+ and 3-20 digits, or a short code)")
        if not self.account:
            errs.append(f"inbound[{index}].account: every route needs an account")
        return errs


def _is_number(number: str) -> bool:
    """An inbound number: digits (3-20) with an optional leading "+"."""
    bare = number.removeprefix("+")
    return bare.isascii() and bare.isdigit() and 3 <= len(bare) <= 20


@dataclass(frozen=True, slots=True)
class ImporterConfig:
    """Bulk file import (gateway/importer.py, docs/campaigns.md)."""

    drop_folder: str = ""  # "" = no drop-folder watcher in serve
    account: str = "dev"  # whose campaigns imported files become
    sender: str = "Septet"
    template: str = ""  # a saved template of the account, for files without a message column
    default_prefix: str = ""  # calling code for numbers written without one
    timezone: str = "UTC"  # of "today" and of the _i / _LE times in file names
    poll_seconds: float = 5.0

    def check(self) -> list[str]:
        errs = []
        if self.poll_seconds <= 0:
            errs.append("importer.poll_seconds: must be > 0")
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except (ValueError, LookupError):
            errs.append("importer.timezone: not an IANA time zone")
        return errs


@dataclass(frozen=True, slots=True)
class OptOutsConfig:
    """Opt-outs (``[optouts]``, docs/optouts.md): the reply keywords and the refresh."""

    # an inbound reply that is exactly one of these (any case, punctuation around ignored)
    # puts its sender on the account's opt-out list; a start keyword takes it off again
    # (only an opt-out a keyword made). [] turns keyword handling off.
    stop_keywords: tuple[str, ...] = DEFAULT_STOP
    start_keywords: tuple[str, ...] = DEFAULT_START
    # seconds before a change made by another process on the same store is enforced here
    refresh_seconds: float = REFRESH_SECONDS

    def keywords(self) -> Keywords:
        """The keyword matcher for ``gateway.inbound.InboundBook``."""
        return Keywords.of(self.stop_keywords, self.start_keywords)

    def check(self) -> list[str]:
        errs = []
        for name in ("stop_keywords", "start_keywords"):
            words = getattr(self, name)
            if len(words) > 100:
                errs.append(f"optouts.{name}: at most 100 keywords")
            for i, word in enumerate(words):
                if not Keywords.of([word], []).stop:
                    errs.append(f"optouts.{name}[{i}]: {word[:40]!r} has no letters or digits")
                elif len(word) > 40:
                    errs.append(f"optouts.{name}[{i}]: longer than 40 characters")
        stop, start = (Keywords.of(w, []).stop for w in (self.stop_keywords, self.start_keywords))
        clash = stop & start
        if clash:
            errs.append(f"optouts: {min(clash)!r} is both a stop and a start keyword")
        if not self.refresh_seconds > 0:
            errs.append("optouts.refresh_seconds: must be a positive number")
        return errs


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration tree."""

    http: HttpConfig = field(default_factory=HttpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    core: CoreConfig = field(default_factory=CoreConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    smpp: tuple[SmppConnectorConfig, ...] = ()
    http_providers: tuple[HttpProviderConnectorConfig, ...] = ()
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    dev: DevConfig = field(default_factory=DevConfig)
    importer: ImporterConfig = field(default_factory=ImporterConfig)
    inbound: tuple[InboundRouteConfig, ...] = ()
    optouts: OptOutsConfig = field(default_factory=OptOutsConfig)
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line (gateway/logs.py)
    # The [shaping] table as written (docs/shaping.md), checked by load() with
    # actors.shaping.rules_from_mapping; shaping_rules() builds the limiter's rules from it.
    shaping: Mapping[str, Any] = field(default_factory=dict)

    def check(self) -> list[str]:
        errs = [*self.http.check(), *self.api.check(), *self.store.check(), *self.core.check(),
                *self.simulator.check(),
                *self.importer.check(), *self.callbacks.check(), *self.dev.check(),
                *self.optouts.check()]
        for i, route in enumerate(self.inbound):
            errs += route.check(i)
        numbers = [r.number.lstrip("+") for r in self.inbound]
        errs += [f"inbound: {n} is routed more than once"
                 for n in sorted({n for n in numbers if numbers.count(n) > 1})]
        for c in self.smpp:
            errs += c.check()
        for h in self.http_providers:
            errs += h.check()
        names = [c.name for c in self.smpp] + [h.name for h in self.http_providers]
        if len(set(names)) != len(names) or "simulator" in names and self.simulator.enabled:
            errs.append("connector names must be unique (the built-in one is 'simulator')")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            errs.append("log_level: must be DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("text", "json"):
            errs.append("log_format: must be text or json")
        return errs


POLICIES: Final = ("transliterate", "ucs2", "gsm7-strict", "national")


# ---------------------------------------------------------------------------------------------
# Loading


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from defaults, an optional TOML file and the environment.

    Raises:
        ConfigError: listing every unknown key, wrong type and invalid value found.
    """
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: {exc}"]) from exc
    _merge_env(raw, os.environ if env is None else env, problems)
    shaping = _shaping_table(raw.pop("shaping", {}), problems)
    config: Config = dataclasses.replace(_build(Config, raw, "", problems), shaping=shaping)
    if not problems:
        problems += config.check()
    if problems:
        raise ConfigError(problems)
    return config


def _shaping_table(raw: Any, problems: list[str]) -> dict[str, Any]:
    """The ``[shaping]`` table with environment values parsed as TOML values (so
    ``SEPTET_SHAPING__CONNECTORS__SIMULATOR__LIMIT='{ rate = 50 }'`` works), checked by
    ``rules_from_mapping``: its problems (named ``shaping.<path>: why``) join ``problems``."""
    from actors.shaping import ShapingConfigError, rules_from_mapping

    if not isinstance(raw, dict):
        problems.append("shaping: expected a table")
        return {}
    table: dict[str, Any] = _parse_env_values(raw)
    try:
        rules_from_mapping(table)
    except ShapingConfigError as exc:
        problems.extend(exc.problems)
        return {}
    return table


def _parse_env_values(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _parse_env_values(v) for k, v in node.items()}
    if isinstance(node, _EnvValue):
        try:
            return tomllib.loads(f"v = {node}")["v"]
        except tomllib.TOMLDecodeError:
            return str(node)  # a bare word: a string
    return node


def shaping_rules(config: Config, *, route: Callable[[str], str] | None = None,
                  campaigns: Mapping[str, CampaignRules] | None = None) -> ShapingRules:
    """The rate limiter's rules from ``config.shaping`` (already checked by :func:`load`).

    Args:
        route: destination -> connector; None leaves it to the gateway (its route table).
        campaigns: live campaign rules (the campaign API's table); they win over campaigns
            named in the file, which still apply to campaign ids the live table lacks.
    """
    from actors.shaping import rules_from_mapping

    kwargs: dict[str, Any] = {} if route is None else {"route": route}
    rules = rules_from_mapping(config.shaping, **kwargs)
    if campaigns is not None:
        rules = dataclasses.replace(rules, campaigns=collections.ChainMap(
            campaigns, dict(rules.campaigns)) if rules.campaigns else campaigns)  # type: ignore[arg-type]
    return rules


def _merge_env(raw: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """Fold ``SEPTET_A__B=value`` into ``raw["a"]["b"]`` (values stay strings; _build parses)."""
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        node = raw
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                problems.append(f"{name}: {'.'.join(path)} is not a section")
                break
            node = nxt
        else:
            node[path[-1]] = _EnvValue(value)


class _EnvValue(str):
    """A string from the environment, to be parsed into the field's type."""


def _build(cls: type[Any], raw: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            problems.append(f"{where}{key}: unknown key")
    values = {}
    for name in fields:
        if name in raw:
            values[name] = _value(hints[name], raw[name], f"{where}{name}", problems)
    try:
        return cls(**{k: v for k, v in values.items() if v is not _BAD})
    except TypeError as exc:  # pragma: no cover - every field has a default
        problems.append(f"{where or 'config'}: {exc}")
        return cls()


_BAD: Final = object()


def _value(hint: Any, value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".", problems)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list")
            return _BAD
        out = [_value(item, v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if _BAD in out else tuple(out)
    if isinstance(origin, type) and issubclass(origin, types.UnionType):  # pragma: no cover
        return value
    if isinstance(value, _EnvValue):
        return _parse_env(hint, value, where, problems)
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        problems.append(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
        return _BAD
    return value


def _parse_env(hint: Any, value: str, where: str, problems: list[str]) -> Any:
    try:
        if hint is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint in (int, float):
            return hint(value)
        if hint is str:
            return str(value)
    except ValueError:
        pass
    problems.append(f"{where}: {value!r} is not a valid {getattr(hint, '__name__', hint)}")
    return _BAD
