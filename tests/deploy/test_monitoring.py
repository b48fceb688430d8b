"""deploy/grafana and deploy/prometheus: they load, and every query names a series /metrics has.

promtool is not available here, so the rules are checked as data: each expression's metric
names against shared.metrics, its brackets balanced, and the alerts the runbook promises there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from shared import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "understudy.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\bunderstudy_[a-z_]+\b")


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', "", expr):  # label values may hold anything
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def _unknown(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in NAME.findall(expr)} - metrics.names()


def test_the_dashboard_loads_and_queries_only_real_series():
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    assert all(NAME.search(expr) and _balanced(expr) for expr in exprs), exprs
    assert _unknown(exprs) == set()


def test_the_dashboard_shows_every_family_of_series():
    used = {name for expr in _dashboard_exprs() for name in NAME.findall(expr)}
    families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in metrics.names()}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used}
    assert families - shown == set()


def test_the_alert_rules_are_complete_and_query_only_real_series():
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    # queue backing up, failed-task ratio, webhook failures, breaker open, no workers
    assert {
        "UnderstudyQueueBackingUp",
        "UnderstudyFailedTaskRatioHigh",
        "UnderstudyWebhookFailures",
        "UnderstudyWebhookBreakerOpen",
        "UnderstudyNoAgentWorkers",
        "UnderstudyNoWebhookDispatcher",
    } <= names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"]
        assert NAME.search(rule["expr"]) and _balanced(rule["expr"]), rule["alert"]
    assert _unknown([rule["expr"] for rule in rules]) == set()


@pytest.mark.parametrize("expr", ["rate(understudy_nope_total[5m])", "sum(understudy_browsers"])
def test_the_checks_catch_a_wrong_name_or_an_unclosed_bracket(expr):
    assert _unknown([expr]) or not _balanced(expr)


def test_the_readme_lists_every_series():
    readme = (ROOT / "README.md").read_text()
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in metrics.names()}
    assert {name for name in families if f"`{name}`" not in readme} == set()
