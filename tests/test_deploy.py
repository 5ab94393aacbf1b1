"""deploy/: the alerting rules parse and cover what issue 9 asks; the dashboard is valid JSON;
every metric either of them names is in the catalogue (docs/metrics.md, itself checked against
the code by tests/test_metrics_catalogue.py); ``promtool check rules`` when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_metrics_catalogue import catalogue

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
METRIC = re.compile(r"\bseptet_[a-z0-9_]+")


def known_series() -> set[str]:
    """Every series name the catalogue allows (histograms: _bucket, _count, _sum)."""
    out = set()
    for name, (kind, _) in catalogue().items():
        out.add(name)
        if kind == "histogram":
            out |= {name + "_bucket", name + "_count", name + "_sum"}
    return out


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_rules_parse_and_each_alert_is_complete() -> None:
    rs = rules()
    names = [r["alert"] for r in rs]
    assert len(names) == len(set(names))
    for r in rs:
        assert isinstance(r["expr"], str) and r["expr"].strip()
        assert r["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        assert r["annotations"]["summary"]  # type: ignore[index]
        assert "for" not in r or re.fullmatch(r"\d+[smh]", str(r["for"]))


def test_rules_cover_the_issue() -> None:
    by_metric = {n: " ".join(str(r["expr"]) for r in rules() if n in str(r["expr"]))
                 for n in ("septet_correlator_receipts_total", "septet_callback_lag_seconds",
                           "septet_core_outbox_oldest_age_seconds", "septet_carrier_ready",
                           "septet_store_used_bytes", "septet_core_in_doubt_parts_at_start")}
    assert all(by_metric.values()), [n for n, e in by_metric.items() if not e]


def test_every_metric_named_in_rules_and_dashboard_exists() -> None:
    known = known_series()
    named = {m for r in rules() for m in METRIC.findall(str(r["expr"]))}
    named |= {m for e in dashboard_exprs() for m in METRIC.findall(e)}
    assert named and sorted(named - known) == []


def test_dashboard_is_valid_and_shows_every_catalogued_metric() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and doc["uid"] and doc["title"]
    for p in doc["panels"]:
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
    shown = {m for e in dashboard_exprs() for m in METRIC.findall(e)}
    base = {re.sub(r"_(bucket|count|sum)$", "", m) for m in shown}
    assert sorted(set(catalogue()) - base) == []


def test_expressions_have_balanced_brackets() -> None:
    for e in [str(r["expr"]) for r in rules()] + dashboard_exprs():
        for o, c in ("()", "{}", "[]"):
            assert e.count(o) == e.count(c), e


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
