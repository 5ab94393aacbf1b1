"""Rate shaping (issue 6): the rules and the pure, clock-injected decisions behind rate_limiter.

What decides when a message may go, all in segments per second unless said otherwise:

* token buckets per account, per sender id, per connector and per destination prefix
  (configured per account and per connector; the tightest wins),
* adaptive connector rates (a throttle answer cuts the rate, which then recovers by itself),
* send windows per account or campaign (hours in a time zone),
* deadlines (``not_after`` and a per-account validity): NOT_SENT/``expired``,
* campaign shaping ("X % of the recipients every N minutes", "at most M a minute"),
* no re-contact within N hours: NOT_SENT/``recently_contacted``,
* the account's opt-out list (``actors.ports.OptOuts``): NOT_SENT/``opted_out``.

The pieces live in ``_shaping_bucket`` (token bucket arithmetic), ``_shaping_window`` (send
windows), ``_shaping_rules`` (configuration), ``_shaping_config`` (rules from a TOML table),
``_shaping_state`` (per-key state), ``_shaping_rows`` (batches decoded into rows),
``_shaping_lanes`` (the per-key book: accounts, connectors, campaigns, buckets, lanes) and
``_shaping_engine`` (the :class:`Shaper`'s decisions over per-key queues). See
docs/shaping.md.

Must not import: trio, lmdb, httpx, gateway, adapters.
"""

from __future__ import annotations

from actors._shaping_bucket import Adaptive, AdaptiveBucket, TokenBucket
from actors._shaping_config import ShapingConfigError, rules_from_mapping
from actors._shaping_engine import Shaper, rows_from_batch
from actors._shaping_rules import (
    AccountRules,
    CampaignRules,
    ConnectorRules,
    Limit,
    ShapingRules,
    single_connector,
)
from actors._shaping_window import SendWindow, WindowGate

__all__ = [
    "AccountRules",
    "Adaptive",
    "AdaptiveBucket",
    "CampaignRules",
    "ConnectorRules",
    "Limit",
    "SendWindow",
    "Shaper",
    "ShapingConfigError",
    "ShapingRules",
    "TokenBucket",
    "WindowGate",
    "rows_from_batch",
    "rules_from_mapping",
    "single_connector",
]
