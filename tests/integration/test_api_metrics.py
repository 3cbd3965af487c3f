"""Metrics and never-stalling GETs of `harestart serve` on a real MariaDB 1+1 lab cluster.

An API restart shows in ``/metrics`` (counter, duration, state gauges); a CLI run writes the
same families to a textfile; with the replica's container paused (SSH and MySQL connections
hang rather than fail) a GET still answers within a second, from an observation that grows
old or shows the node unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.prometheus_text import samples, value

from . import harestart_cli
from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import wait_for

pytestmark = pytest.mark.integration

TOKEN = "metrics-integration-token-0123456789"
OPERATOR_TOKEN = "metrics-integration-operator-0123456789"  # /metrics needs one (#21)
ACCOUNT = "4242"
HA = "metrics-ha"


@pytest.fixture
def served(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> Iterator[tuple[Any, harestart_cli.Served, Path]]:
    cluster = cluster_factory(1)
    inventory = cluster.write_inventory(tmp_path / "inv.yml", group_id=HA, account=ACCOUNT)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: ACCOUNT, OPERATOR_TOKEN: {"operator": True}}))
    tokens.chmod(0o600)
    s = harestart_cli.start_serve(
        inventory, state_dir=tmp_path, tokens=tokens, args=("--observe-interval", "1")
    )
    try:
        yield cluster, s, inventory
    finally:
        harestart_cli.stop_serve(s.proc)


def test_metrics_textfile_and_a_get_while_the_replica_is_paused(
    served: tuple[Any, harestart_cli.Served, Path], tmp_path: Path
) -> None:
    cluster, s, inventory = served
    http = requests.Session()
    http.headers.update({"X-Auth-Token": TOKEN, "Accept": "application/json"})
    detail = s.url(f"/v1.0/{ACCOUNT}/ha/{HA}")
    g = {"account": ACCOUNT, "group": HA}

    def ha() -> dict[str, Any]:
        r = http.get(detail, timeout=10)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()["ha_instance"]
        return doc

    before = ha()
    assert before["state"] == "ACTIVE" and before["observed_at"] is not None

    # --- an API restart shows in /metrics ---------------------------------------------------
    r = http.post(detail + "/action", json={"restart": {}}, timeout=60)
    assert r.status_code == 202, r.text

    def finished() -> dict[str, Any] | None:
        d = ha()
        return (
            d if d["last_restart"] is not None and d["last_restart"]["running"] is False else None
        )

    after = wait_for("the API restart finished", finished, timeout=400, interval=0.5)
    assert after["last_restart"]["ok"] is True and after["state"] == "ACTIVE"
    # an operator's token (a tenant's gets 403, none 401: #21)
    metrics = requests.get(s.url("/metrics"), headers={"X-Auth-Token": OPERATOR_TOKEN}, timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(metrics.text)
    assert value(found, "harestart_restarts_total", **g, result="ok") == 1
    assert value(found, "harestart_restart_duration_seconds_count") == 1
    total = value(found, "harestart_restart_duration_seconds_sum")
    assert total == pytest.approx(after["last_restart"]["result"]["duration_s"], abs=0.01)
    assert value(found, "harestart_step_duration_seconds_count", step="restart_source") == 1
    assert value(found, "harestart_group_state", **g, state="ACTIVE") == 1
    assert value(found, "harestart_mha_running", **g) == 1
    assert value(found, "harestart_lock_held", **g) == 0
    route = "/v1.0/{accountId}/ha/{haId}/action"
    assert value(found, "harestart_http_requests_total", method="POST", route=route, code="202")

    # --- a CLI run writes the same families to a textfile ------------------------------------
    textfile = tmp_path / "collector" / "harestart.prom"
    textfile.parent.mkdir()
    out = harestart(
        "run", str(inventory), "--yes", "--format", "json", "--metrics-textfile", str(textfile),
        state_dir=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = out.json()
    found = samples(textfile.read_text())
    assert [p.name for p in textfile.parent.iterdir()] == ["harestart.prom"]
    assert value(found, "harestart_restarts_total", **g, result="ok") == 1
    assert value(found, "harestart_restart_duration_seconds_sum") == pytest.approx(
        doc["duration_s"], abs=0.001
    )
    for step in doc["steps"]:
        kind = step["action"]
        ran = [x for x in doc["steps"] if x["action"] == kind and x["duration_s"] is not None]
        assert value(found, "harestart_step_duration_seconds_count", step=kind) == len(ran)
    assert value(found, "harestart_group_state", **g, state="ACTIVE") == 1
    assert value(found, "harestart_mha_running", **g) == 1
    assert value(found, "harestart_lock_held", **g) == 0

    # --- the replica's container paused: every GET is still answered -----------------------
    # Answered (200, within ha()'s 10 s, less than observing a frozen host takes), never a 503:
    # how fast is bench/api.py's to measure, not this test's.
    replica = cluster.replicas[0]
    container = replica.container.get_wrapped_container()
    container.pause()
    try:
        failed: list[str] = []  # wait_for reads a probe's exception as "not yet": kept here

        def node_down_or_data_old() -> dict[str, Any] | None:
            try:
                d = ha()
            except (AssertionError, requests.RequestException) as exc:
                failed.append(repr(exc))
                raise
            (rep,) = d["replicas"]
            if rep.get("reachable") is False or d["observation_age_s"] > 5:
                return d
            return None

        seen = wait_for("the replica unreachable or the data old", node_down_or_data_old,
                        timeout=120, interval=0.2)  # fmt: skip
        assert failed == [], f"GETs failed while the replica was paused: {failed}"
        answers = [ha() for _ in range(10)]  # and it keeps answering
        assert seen["observed_at"] is not None
        print(
            f"paused replica: last answer: replica {answers[-1]['replicas'][0]['status']}, "
            f"observation age {answers[-1]['observation_age_s']} s"
        )
    finally:
        container.unpause()
