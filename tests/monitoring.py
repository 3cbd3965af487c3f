"""monitoring/: the Grafana dashboard's queries and the Prometheus rules, read for tests.

The unit tests (tests/unit/test_monitoring.py) check them against harestart's metrics
registry and with ``promtool``; the integration test (tests/integration/test_prometheus.py)
runs the same queries on a real Prometheus scraping ``harestart serve``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harestart.domain.result import GroupStatus
from harestart.views.metrics import GroupSnapshot, Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "monitoring" / "grafana" / "harestart.json"
RULES = ROOT / "monitoring" / "prometheus" / "harestart-rules.yml"
RULES_TESTS = ROOT / "monitoring" / "prometheus" / "harestart-rules.test.yml"
SETUP = ROOT / "monitoring" / "setup.sh"
DOCS = ROOT / "docs" / "how-to" / "prometheus.md"

# Grafana's variables as a query sees them once Grafana replaced them: "All" of a multi-value
# variable is its allValue (".*"); the interval variables are durations.
GRAFANA_VALUES = {
    "account": ".*",
    "group": ".*",
    "window": "1h",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
# A metric name in PromQL: an identifier not followed by "(" (a function) nor inside a string
# or a label matcher. harestart's metrics all start with harestart_, which is all we look for.
_METRIC = re.compile(r"\bharestart_[a-z0-9_]+\b")


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str  # as written in the dashboard, with Grafana's $variables
    instant: bool = False  # an instant query (a stat, a table), else a range (a graph)

    def promql(self) -> str:
        """The expression Prometheus receives, the variables replaced."""
        return _VARIABLE.sub(lambda m: GRAFANA_VALUES[m.group(1)], self.expr)

    def metrics(self) -> set[str]:
        return metric_names(self.expr)


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_METRIC.findall(without_strings))


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries(doc: dict[str, Any] | None = None) -> list[Query]:
    """Every panel target's expression (rows hold no target when expanded)."""
    doc = dashboard() if doc is None else doc
    return [
        Query(p["title"], t["refId"], t["expr"], bool(t.get("instant", False)))
        for p in doc["panels"]
        for t in p.get("targets", [])
    ]


def rules() -> list[dict[str, Any]]:
    """Every rule of every group of harestart-rules.yml."""
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def exposed_names() -> set[str]:
    """Every sample name harestart's registry can expose (counters as ``_total``, histograms
    as ``_bucket``/``_sum``/``_count``), from the registry itself: renaming a metric there
    changes this set."""
    metrics = Metrics(http=True)
    snap = GroupSnapshot(
        "1", "g", GroupStatus.ACTIVE, True, False, observation_age_s=1.0, pending=(("db1", "x"),)
    )
    metrics.watch_groups(lambda: [snap])
    metrics.record_refusal("1", "g")
    metrics.record_request("GET", "/metrics", 200)
    names: set[str] = set()
    for family in metrics.registry.collect():
        kind = family.type
        if kind == "counter":
            names.add(f"{family.name}_total")
        elif kind == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def promtool() -> str:
    """promtool's path; monitoring/setup.sh installs Debian's prometheus package when missing
    (``make lint``, ``make unit`` and ``make integration`` run it first)."""
    found = shutil.which("promtool")
    assert found is not None, f"promtool is missing: run 'bash {SETUP.relative_to(ROOT)}'"
    return found


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
