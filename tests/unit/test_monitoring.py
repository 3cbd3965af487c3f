"""monitoring/: the Grafana dashboard and the Prometheus alerting rules (#25).

No Grafana server is installable here and no JSON Schema of Grafana dashboards can be vendored
(Grafana's own schema is CUE inside its AGPL repository; grafana-foundation-sdk's wheel ships
typed builders, not a schema), so the dashboard's structure is checked here: what Grafana
needs to import it, unique panel ids, a grid that fits, every query bound to the datasource
variable. Every query parses as PromQL (``promtool check rules`` on a generated rules file)
and names only metrics harestart's registry exposes, so renaming a metric fails here; the
integration test runs the same queries on a real Prometheus. ``make lint`` runs ``promtool
check rules`` and ``promtool test rules`` on the alerting rules; here their metrics, their
annotations and their runbook anchors are checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import monitoring
from tests.monitoring import Query

BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return monitoring.dashboard()


def test_the_dashboard_has_what_grafana_imports(doc: dict[str, Any]) -> None:
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time", "annotations"):
        assert key in doc, key
    assert doc["uid"] == "harestart" and len(doc["uid"]) <= 40
    # Grafana 10.4 and 11 write 39; a newer Grafana migrates an older dashboard on import.
    assert doc["schemaVersion"] >= 39
    assert doc.get("id") is None  # an exported dashboard carries no database id
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("account", "group"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"


def test_panels_have_unique_ids_and_fit_the_grid(doc: dict[str, Any]) -> None:
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        grid = p["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys(), p["title"]
        assert all(isinstance(grid[k], int) for k in "xywh"), p["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, p["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        assert p["title"] and p["type"]
        if p["type"] != "row":
            assert p.get("description"), f"{p['title']}: say what it shows, for 3 a.m."
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_target_is_bound_and_names_its_variables(doc: dict[str, Any]) -> None:
    defined = {v["name"] for v in doc["templating"]["list"]} | BUILTIN_VARIABLES
    for p in doc["panels"]:
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            used = set(re.findall(r"\$\{?(\w+)\}?", t["expr"]))
            assert used <= defined, f"{p['title']}: undefined {used - defined}"
            assert used <= monitoring.GRAFANA_VALUES.keys()


def test_the_dashboard_covers_what_operators_ask(doc: dict[str, Any]) -> None:
    """Groups by state, restarts by result and duration, failover-off time, locks, pending."""
    used = set().union(*(q.metrics() for q in monitoring.queries(doc)))
    assert {
        "harestart_group_state",
        "harestart_restarts_total",
        "harestart_restart_duration_seconds_bucket",
        "harestart_step_duration_seconds_bucket",
        "harestart_mha_running",
        "harestart_lock_held",
        "harestart_node_pending_restart",
        "harestart_observation_age_seconds",
    } <= used
    exprs = " ".join(q.expr for q in monitoring.queries(doc))
    assert "histogram_quantile(0.99" in exprs


def test_every_metric_queried_or_alerted_on_exists() -> None:
    exposed = monitoring.exposed_names()
    for q in monitoring.queries():
        missing = q.metrics() - exposed
        assert not missing, f"dashboard panel {q.panel!r} {q.ref}: no metric {missing}"
        assert q.metrics(), f"{q.panel!r} {q.ref} queries no harestart metric"
    for rule in monitoring.rules():
        names = monitoring.metric_names(rule["expr"])
        assert names and names <= exposed, f"{rule['alert']}: no metric {names - exposed}"


def test_a_renamed_metric_is_caught() -> None:
    """The name check reads the registry, so it cannot pass on a name the registry lacks."""
    exposed = monitoring.exposed_names()
    assert "harestart_restarts_total" in exposed
    assert "harestart_restart_duration_seconds_bucket" in exposed
    query = Query("p", "A", 'sum(harestart_restart_total{result="ok"})')
    assert query.metrics() - exposed == {"harestart_restart_total"}


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses no bare expression; a recording rule per query it does parse."""
    queries = monitoring.queries()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"harestart:dashboard_query_{i}", "expr": q.promql()}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    out = monitoring.check_rules(path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(queries)} rules found" in out.stdout


def test_promtool_check_would_catch_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": "sum(harestart_x"}]}]}
        )
    )
    assert monitoring.check_rules(path).returncode != 0


def test_every_alert_says_what_and_where_to_read_more() -> None:
    docs = monitoring.DOCS.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", docs, flags=re.MULTILINE)}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(monitoring.RULES_TESTS.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
    }
    alerts = [r for r in monitoring.rules() if "alert" in r]
    assert len(alerts) >= 5
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/how-to/prometheus.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section {anchor}"
        assert name in tested, f"{name} has no promtool unit test"


def _slug(heading: str) -> str:
    """MkDocs' (Python-Markdown toc's) anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text))
