"""The shaping rules: frozen dataclasses the gateway builds from its configuration.

``ShapingRules()`` with no arguments means no limits: the limiter only applies deadlines.
Rates are in segments per second (carriers count segments), except campaign rules, which
count messages (recipients).

Must not import: trio, lmdb, httpx, gateway, adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from actors._shaping_bucket import Adaptive
from actors._shaping_window import SendWindow


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket: ``rate`` segments per second, at most ``burst`` at once.

    ``burst`` defaults to one second's worth (at least 1). A burst below a message's segment
    count still lets that message through once the bucket is full (see ``TokenBucket``).
    """

    rate: float
    burst: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 0:
            raise ValueError(f"Limit needs rate > 0 and burst >= 0, got {self.rate}, {self.burst}")
        if self.burst == 0:
            object.__setattr__(self, "burst", max(1.0, self.rate))

    @classmethod
    def per_minute(cls, count: float, burst: float = 0.0) -> Limit:
        """``count`` per minute (smooth: burst 1 unless given)."""
        return cls(count / 60.0, burst or 1.0)


@dataclass(frozen=True)
class AccountRules:
    """What one account may send, and when.

    Attributes:
        limit: bucket for the whole account.
        per_sender: bucket each sender id of the account gets (``senders`` overrides per id).
        senders: buckets for named sender ids.
        prefixes: buckets per destination prefix (longest match, e.g. ``"+44"``, ``"+447"``).
        window: allowed sending hours; messages outside wait for the next opening.
        validity: seconds after acceptance after which an unsent message expires (0: none);
            the earlier of this and the message's ``not_after`` applies.
        no_recontact_hours: skip a number this account sent to within this many hours.
    """

    limit: Limit | None = None
    per_sender: Limit | None = None
    senders: Mapping[str, Limit] = field(default_factory=dict)
    prefixes: Mapping[str, Limit] = field(default_factory=dict)
    window: SendWindow | None = None
    validity: float = 0.0
    no_recontact_hours: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(validity=self.validity, no_recontact_hours=self.no_recontact_hours)


def _non_negative(**values: object) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")


@dataclass(frozen=True)
class ConnectorRules:
    """What one connector (carrier bind set) may carry.

    Attributes:
        limit: bucket for the whole connector; throttle feedback adapts it.
        per_sender: bucket per sender id on this connector.
        prefixes: buckets per destination prefix on this connector (longest match).
        adaptive: how throttle answers lower and restore ``limit``.
        adapt_without_limit: without a ``limit``, answer throttling anyway: a temporary
            limit at the rate measured just before, cut and recovering, then removed.
            Off by default: "no limit" then means throttle answers are left to the
            dispatcher's retries.
    """

    limit: Limit | None = None
    per_sender: Limit | None = None
    prefixes: Mapping[str, Limit] = field(default_factory=dict)
    adaptive: Adaptive = Adaptive()  # noqa: RUF009 - frozen: one shared default is safe
    adapt_without_limit: bool = False


@dataclass(frozen=True)
class CampaignRules:
    """Shaping for one campaign (counted in messages, i.e. recipients).

    Attributes:
        total: recipients in the campaign; needed by ``slice_percent``.
        slice_percent: release this percentage of ``total`` per slice (e.g. 15)...
        slice_every: ...one slice every this many seconds (e.g. 1200 for 20 minutes). A slice
            holds ``ceil(total * slice_percent / 100)`` messages.
        per_minute: at most this many messages a minute (smooth; burst ``per_minute_burst``).
        per_minute_burst: messages allowed back to back before ``per_minute`` pacing (>= 1).
        start: when slice 0 opens (Unix time; 0: when the limiter sees the first message).
        released: messages already released before this process started, so slices carry on
            correctly after a restart (the gateway reads its campaign counters).
        no_recontact_hours: skip numbers the account sent to within this many hours (the
            larger of this and the account's window applies).
        window: allowed hours for this campaign, on top of the account's.
        paused: the campaign is paused: none of its messages is released (each goes back
            to the durable schedule for ``ShapingRules.pause_recheck`` seconds, or waits
            here when the limiter has no schedule to hand it to) until this turns False.
            Read live, per message, from ``ShapingRules.campaigns``.
    """

    total: int = 0
    slice_percent: float = 0.0
    slice_every: float = 0.0
    per_minute: float = 0.0
    per_minute_burst: float = 1.0
    start: float = 0.0
    released: int = 0
    no_recontact_hours: float = 0.0
    window: SendWindow | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        _non_negative(total=self.total, slice_percent=self.slice_percent,
                      slice_every=self.slice_every, per_minute=self.per_minute,
                      start=self.start, released=self.released,
                      no_recontact_hours=self.no_recontact_hours)
        if self.slice_percent and not (
                0 < self.slice_percent <= 100 and self.slice_every > 0 and self.total > 0):
            raise ValueError("slices need 0 < slice_percent <= 100, slice_every > 0, total > 0")
        if self.per_minute < 0 or self.per_minute_burst < 1:
            raise ValueError("per_minute must be >= 0 and per_minute_burst >= 1")


def single_connector(to: str) -> str:
    """The default route: every destination goes to the connector named ``"default"``."""
    return "default"


@dataclass(frozen=True)
class ShapingRules:
    """Every rule the rate limiter applies. ``ShapingRules()``: no limits, deadlines only.

    Attributes:
        accounts: rules per account name; others get ``default_account``.
        connectors: rules per connector name; others get ``default_connector``.
        campaigns: rules per campaign, keyed ``account + "\\x00" + campaign`` (campaign
            names are per account) or, for rules that apply to a name in every account,
            by the bare name. Any Mapping: the gateway passes a live view of its campaign
            table; a campaign's pace and slices are read when its first message arrives,
            ``paused`` for every message.
        pause_recheck: seconds a paused campaign's message goes back to the durable schedule
            before it is looked at again (so resuming takes effect within this).
        route: destination number -> connector name (which connector's buckets to charge).
        max_held: the limiter stops reading its inbox while it holds this many messages.
    """

    accounts: Mapping[str, AccountRules] = field(default_factory=dict)
    default_account: AccountRules = AccountRules()
    connectors: Mapping[str, ConnectorRules] = field(default_factory=dict)
    default_connector: ConnectorRules = ConnectorRules()
    campaigns: Mapping[str, CampaignRules] = field(default_factory=dict)
    route: Callable[[str], str] = single_connector
    max_held: int = 100_000
    pause_recheck: float = 30.0

    def __post_init__(self) -> None:
        if self.max_held < 1:
            raise ValueError("max_held must be at least 1")
        if not self.pause_recheck > 0:
            raise ValueError("pause_recheck must be > 0")
