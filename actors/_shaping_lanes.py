"""The shaper's per-key book: accounts, connectors, campaigns, per-key buckets and lanes.

Built on first sight of a key (from the rules, or their defaults) and forgotten when idle:
:class:`LaneBook` is the base of :class:`actors._shaping_engine.Shaper`, which looks a
message's lane up here (``_lane``: the buckets, windows and campaign it is judged by) and
sweeps it from time to time (``_forget_idle``). The state classes are in ``_shaping_state``.

Must not import: trio, lmdb, httpx, gateway, adapters. Pure; time is an argument.
"""

from __future__ import annotations

from actors._shaping_bucket import TokenBucket
from actors._shaping_rows import CAMPAIGN, SENDER, TO, Row
from actors._shaping_rules import Limit, ShapingRules, single_connector
from actors._shaping_state import Account, Campaign, Connector, Lane, longest_prefix


class LaneBook:
    """Per-key state of one shaper: built on first sight of a key, forgotten when idle."""

    def __init__(self, rules: ShapingRules) -> None:
        self.rules = rules
        self._route = rules.route
        self._single = rules.route is single_connector  # skip a call per message
        self._accounts: dict[str, Account] = {}
        self._connectors: dict[str, Connector] = {}
        self._campaigns: dict[str, Campaign] = {}
        self._camp_rules = rules.campaigns
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._lanes: dict[tuple[str, ...], Lane] = {}
        self._longest_recontact = 0.0

    def _account(self, name: str) -> Account:
        rules = self.rules.accounts.get(name, self.rules.default_account)
        acct = self._accounts[name] = Account(name, rules)
        return acct

    def _connector(self, name: str, now: float) -> Connector:
        rules = self.rules.connectors.get(name, self.rules.default_connector)
        conn = self._connectors[name] = Connector(name, rules, now)
        return conn

    def _campaign(self, ckey: str, name: str, now: float) -> Campaign | None:
        """The campaign state of ``ckey`` (account 0x00 name): its own rules, else rules
        given for the bare ``name``."""
        camp = self._campaigns.get(ckey)
        if camp is None:
            rules = self._camp_rules.get(ckey) or self._camp_rules.get(name)
            if rules is None:
                return None
            camp = self._campaigns[ckey] = Campaign(rules, now)
        return camp

    def _bucket(self, key: tuple[str, ...], limit: Limit) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(limit.rate, limit.burst)
        return b

    def _lane(self, row: Row, acct: Account, now: float) -> Lane:
        to, sender, campaign = row[TO], row[SENDER], row[CAMPAIGN]
        cname = "default" if self._single else self._route(to)
        conn = self._connectors.get(cname) or self._connector(cname, now)
        ap = longest_prefix(to, acct.lengths, acct.prefixes) if acct.lengths else ""
        cp = longest_prefix(to, conn.lengths, conn.prefixes) if conn.lengths else ""
        key = (acct.name, sender, cname, campaign, ap, cp)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = self._new_lane(acct, conn, sender, campaign, ap, cp, now)
        return lane

    def _new_lane(self, acct: Account, conn: Connector, sender: str, campaign: str,
                  ap: str, cp: str, now: float) -> Lane:
        buckets: list[TokenBucket] = []
        if acct.bucket:
            buckets.append(acct.bucket)
        per_sender = acct.rules.senders.get(sender) or acct.rules.per_sender
        if per_sender:
            buckets.append(self._bucket(("as", acct.name, sender), per_sender))
        if ap:
            buckets.append(self._bucket(("ap", acct.name, ap), acct.prefixes[ap]))
        if conn.bucket:
            buckets.append(conn.bucket)
        if conn.rules.per_sender:
            buckets.append(self._bucket(("cs", conn.name, sender), conn.rules.per_sender))
        if cp:
            buckets.append(self._bucket(("cp", conn.name, cp), conn.prefixes[cp]))
        ckey = f"{acct.name}\x00{campaign}" if campaign else ""
        camp = self._campaign(ckey, campaign, now) if campaign else None
        gates = tuple(g for g in (acct.gate, camp.gate if camp else None) if g is not None)
        recontact = max(acct.recontact, camp.rules.no_recontact_hours * 3600.0 if camp else 0.0)
        self._longest_recontact = max(self._longest_recontact, recontact)
        return Lane(tuple(buckets), gates, camp, recontact, conn, ckey)

    def _forget_idle(self, now: float) -> None:
        """Forget idle lanes, full per-key buckets and campaigns not seen for a day."""
        self._lanes = {k: lane for k, lane in self._lanes.items() if lane.queue or lane.scheduled}
        used = {id(b) for lane in self._lanes.values() for b in lane.buckets}
        self._buckets = {k: b for k, b in self._buckets.items()
                         if id(b) in used or not b.is_full(now)}
        live = {id(lane.campaign) for lane in self._lanes.values()}
        self._campaigns = {k: c for k, c in self._campaigns.items()
                           if id(c) in live or now - c.last_seen < 86_400.0}
