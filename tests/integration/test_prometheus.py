"""A real Prometheus (Debian's 2.42, ``monitoring/setup.sh``) scrapes ``harestart serve`` on a
MariaDB 1+1 lab cluster with an operator's token as a Bearer (what its ``authorization``
setting sends), loads ``monitoring/prometheus/harestart-rules.yml``, and through its HTTP API
answers every query of the Grafana dashboard (``monitoring/grafana/harestart.json``): the
group REBOOT during a restart through the API and ACTIVE after it, the restart counted ok with
its duration, a node's pending restart, every rule evaluating without error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests import monitoring
from tests.monitoring import Query

from . import harestart_cli
from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import wait_for

pytestmark = pytest.mark.integration

TENANT_TOKEN = "prometheus-integration-tenant-0123456789"
OPERATOR_TOKEN = "prometheus-integration-operator-0123456789"
ACCOUNT = "4343"
HA = "prom-ha"
GROUP = {"account": ACCOUNT, "group": HA}
NOT_ACTIVE_PANEL = "Groups not ACTIVE now"


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        doc = r.json()
        assert r.status_code == 200 and doc["status"] == "success", f"{path} {params}: {r.text}"
        return doc["data"]

    def instant(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def ranged(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=promql, start=start, end=end, step="1s")
        result: list[dict[str, Any]] = data["result"]
        return result

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_prometheus(target_port: int, workdir: Path) -> Prometheus:
    binary = shutil.which("prometheus")
    assert binary is not None, f"prometheus is missing: run 'bash {monitoring.SETUP}'"
    workdir.mkdir()
    token = workdir / "harestart-token"
    token.write_text(OPERATOR_TOKEN + "\n")  # Prometheus trims the trailing newline
    token.chmod(0o600)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(monitoring.RULES)],
        "scrape_configs": [
            {
                "job_name": "harestart",
                "authorization": {"type": "Bearer", "credentials_file": str(token)},
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}:\n{prom.tail()}")
        return requests.get(f"{prom.url}/-/ready", timeout=5).status_code == 200

    try:
        wait_for("prometheus ready", ready, timeout=120)
    except BaseException:
        _stop(proc)
        raise
    return prom


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def scraped(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> Iterator[tuple[harestart_cli.Served, Prometheus, Path]]:
    """serve on a 1+1 lab cluster, and a Prometheus scraping it every second; both stopped
    at the end (the cluster by its factory)."""
    cluster = cluster_factory(1)
    inventory = cluster.write_inventory(tmp_path / "inv.yml", group_id=HA, account=ACCOUNT)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TENANT_TOKEN: ACCOUNT, OPERATOR_TOKEN: {"operator": True}}))
    tokens.chmod(0o600)
    served = harestart_cli.start_serve(
        inventory, state_dir=tmp_path, tokens=tokens, args=("--observe-interval", "1")
    )
    try:
        prom = _start_prometheus(served.port, tmp_path / "prometheus")
        try:
            yield served, prom, inventory
        finally:
            _stop(prom.proc)
    finally:
        harestart_cli.stop_serve(served.proc)


def test_prometheus_scrapes_serve_and_answers_every_dashboard_query(
    scraped: tuple[harestart_cli.Served, Prometheus, Path], tmp_path: Path
) -> None:
    served, prom, inventory = scraped
    started = time.time()
    (not_active,) = [q for q in monitoring.queries() if q.panel == NOT_ACTIVE_PANEL]

    def target_up() -> bool:  # the Bearer token was accepted
        (target,) = prom.api("targets")["activeTargets"]
        assert target["health"] != "down", f"{target['lastError']}\n{prom.tail()}"
        return bool(target["health"] == "up")

    wait_for("Prometheus scraping serve", target_up, timeout=120)
    assert prom.instant(not_active.promql()) == []  # the lab's group starts ACTIVE

    _restart_seen_by_prometheus(served, prom, not_active)
    out = harestart(
        "mark-pending", str(inventory), "--group", HA, "--node", "db2", "--reason", "kernel",
        state_dir=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    pending = f'harestart_node_pending_restart{{group="{HA}",node="db2",reason="mark"}}'
    wait_for("the pending restart in Prometheus", lambda: prom.instant(pending), timeout=120)

    def active() -> bool:
        state = f'harestart_group_state{{group="{HA}",state="ACTIVE"}} == 1'
        return bool(prom.instant(state)) and prom.instant(not_active.promql()) == []

    wait_for("the group ACTIVE again in Prometheus", active, timeout=120)
    _every_dashboard_query_answers(prom, started, time.time())
    _the_rules_evaluate(prom)


def _restart_seen_by_prometheus(
    served: harestart_cli.Served, prom: Prometheus, not_active: Query
) -> None:
    """A restart through the API: the dashboard's not-ACTIVE table shows the group REBOOT
    while it runs; then the ok restart and its duration are in Prometheus."""
    http = requests.Session()
    http.headers.update({"X-Auth-Token": TENANT_TOKEN, "Accept": "application/json"})
    detail = served.url(f"/v1.0/{ACCOUNT}/ha/{HA}")
    r = http.post(detail + "/action", json={"restart": {}}, timeout=60)
    assert r.status_code == 202, r.text

    def rebooting() -> list[dict[str, Any]]:
        return [x for x in prom.instant(not_active.promql()) if x["metric"]["state"] == "REBOOT"]

    (seen,) = wait_for("Prometheus sees the group REBOOT", rebooting, timeout=120, interval=0.5)
    assert seen["metric"]["group"] == HA and seen["metric"]["account"] == ACCOUNT

    def finished() -> dict[str, Any] | None:
        doc: dict[str, Any] = http.get(detail, timeout=10).json()["ha_instance"]
        last = doc["last_restart"]
        return doc if last is not None and last["running"] is False else None

    after = wait_for("the API restart finished", finished, timeout=400, interval=0.5)
    assert after["last_restart"]["ok"] is True, after
    ok = f'harestart_restarts_total{{account="{ACCOUNT}",group="{HA}",result="ok"}}'
    (counted,) = wait_for("the ok restart in Prometheus", lambda: prom.instant(ok), timeout=60)
    assert float(counted["value"][1]) == 1
    p50 = (
        "histogram_quantile(0.5, sum by (le) (rate(harestart_restart_duration_seconds_bucket[1h])))"
    )
    (quantile,) = prom.instant(p50)
    assert math.isfinite(float(quantile["value"][1])) and float(quantile["value"][1]) > 0


def _every_dashboard_query_answers(prom: Prometheus, start: float, end: float) -> None:
    """As Grafana asks: an instant query for an instant target (stats, tables), else a range
    query over the test's span (a restart's bars exist only around the restart)."""
    for q in monitoring.queries():
        promql = q.promql()
        result = prom.instant(promql) if q.instant else prom.ranged(promql, start, end)
        if q.panel == NOT_ACTIVE_PANEL:
            assert result == [], f"{q.panel}: {result}"  # seen non-empty during the restart
        else:
            assert result, f"dashboard panel {q.panel!r} {q.ref}: no data for {promql}"
    # the dashboard's variables (label_values(...) in Grafana)
    accounts = prom.api("label/account/values", **{"match[]": "harestart_group_state"})
    assert accounts == [ACCOUNT]


def _the_rules_evaluate(prom: Prometheus) -> None:
    """Every rule loaded and evaluated without error, none firing; the pending restart's
    alert matched the real series (pending: its `for` is a day)."""
    loaded = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in loaded} == {r["alert"] for r in monitoring.rules()}
    assert all(r["health"] == "ok" for r in loaded), [r for r in loaded if r["health"] != "ok"]

    def pending_alert() -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = prom.api("alerts")["alerts"]
        assert [a for a in alerts if a["state"] == "firing"] == [], alerts
        return [a for a in alerts if a["labels"]["alertname"] == "HarestartPendingRestart"]

    (alert,) = wait_for("HarestartPendingRestart pending", pending_alert, timeout=60)
    assert alert["state"] == "pending"
    assert alert["labels"] | GROUP == alert["labels"] and alert["labels"]["node"] == "db2"
