"""Prometheus metrics: ``GET /metrics`` of serve after a restart on the fakes, the request
counter, and the textfile a CLI run writes for node_exporter (``views.metrics``)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from harestart.domain.plan.model import Action
from harestart.domain.result import GroupStatus, RunResult, StepRecord, StepStatus
from harestart.engine.sequencer.waiting import poll_until
from harestart.errors import ExitCode
from harestart.http.api import OPERATOR, TokenMap, route_template
from harestart.http.server import ApiServer, build_api
from harestart.inventory.load import load_inventory
from harestart.views.metrics import Metrics, result_label
from tests.prometheus_text import samples, value

from .test_api import DETAIL, LIST, SEED_HA, make_env
from .test_api import OPERATOR_TOKEN as API_OPERATOR_TOKEN
from .test_cli_run import ACCOUNT, Harestart, Lab, harestart, lab

__all__ = ["harestart", "lab"]  # the fixtures

TOKEN = "metrics-test-token-0123456789"
OPERATOR_TOKEN = "metrics-operator-token-0123456789"


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    structlog.configure(processors=[lambda *_: ""], logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


def get(server: ApiServer, path: str, token: str | None = None) -> tuple[int, str, bytes]:
    c = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        c.request("GET", path, headers={"X-Auth-Token": token} if token else {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        c.close()


def post_restart(server: ApiServer, path: str) -> int:
    c = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        c.request("POST", path, body=b'{"restart": {}}', headers={"X-Auth-Token": TOKEN})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


# --- the pure part -------------------------------------------------------------------------


def test_route_labels_are_templates_never_raw_paths() -> None:
    assert route_template("/v1.0/1234/ha") == "/v1.0/{accountId}/ha"
    assert route_template("/v1.0/1234/ha/x-y") == "/v1.0/{accountId}/ha/{haId}"
    assert route_template("/v1.0/1234/ha/x-y/action") == "/v1.0/{accountId}/ha/{haId}/action"
    assert route_template("/metrics") == "/metrics"
    assert route_template("/v2/1234/ha") == route_template("/etc/passwd") == "unmatched"


def test_a_result_is_counted_with_its_durations_and_steps_by_kind() -> None:
    steps = (
        StepRecord(1, Action.STOP_FAILOVER, "mha", StepStatus.DONE, "t", 1.5),
        StepRecord(2, Action.RESTART_REPLICA, "db2", StepStatus.DONE, "t", 20.0),
        StepRecord(3, Action.RESTART_REPLICA, "db3", StepStatus.FAILED, "t", 30.0),
        StepRecord(4, Action.RESTART_SOURCE, "db1", StepStatus.PENDING),
    )
    failed = RunResult("g", "7", GroupStatus.ERROR, "t0", "t1", 52.0, steps, None, None)
    assert result_label(failed) == "failed"
    m = Metrics()
    m.record_run(failed)
    m.record_refusal("7", "g")
    found = samples(m.exposition().decode())
    assert value(found, "harestart_restarts_total", account="7", group="g", result="failed") == 1
    assert value(found, "harestart_restarts_total", account="7", group="g", result="refused") == 1
    assert value(found, "harestart_restart_duration_seconds_count") == 1
    assert value(found, "harestart_restart_duration_seconds_sum") == 52.0
    assert value(found, "harestart_step_duration_seconds_count", step="restart_replica") == 2
    assert value(found, "harestart_step_duration_seconds_sum", step="restart_replica") == 50.0
    assert value(found, "harestart_step_duration_seconds_count", step="restart_source") is None
    # one registry per Metrics: two servers in one process do not share counters
    assert value(samples(Metrics().exposition().decode()), "harestart_restarts_total") is None


# --- serve: GET /metrics after a restart on the fakes --------------------------------------


def test_metrics_after_an_api_restart_show_the_counter_durations_and_state(
    lab: Callable[..., Lab],
) -> None:
    x = lab("a")
    inv = load_inventory(x.inventory)
    api, restarter, observer = build_api(
        inv, TokenMap({TOKEN: ACCOUNT, OPERATOR_TOKEN: OPERATOR}), threading.Event(), env=x.env
    )
    server = ApiServer(api).start()
    try:
        # Never observed yet: the state from the lock and journal, observed_at null.
        status, _, body = get(server, f"/v1.0/{ACCOUNT}/ha/a", TOKEN)
        ha = json.loads(body)["ha_instance"]
        assert status == 200 and ha["observed_at"] is None and ha["healthy"] is None
        assert ha["state"] == "ACTIVE" and ha["replicas"][0]["status"] == "UNKNOWN"

        assert post_restart(server, f"/v1.0/{ACCOUNT}/ha/a/action") == 202
        assert restarter.wait(timeout=30)
        assert x.restarts("a") == [1, 1, 1]
        assert post_restart(server, f"/v1.0/{ACCOUNT}/ha/nope/action") == 404
        observer.poll_once()  # observe now (the fakes are not thread-safe during a run)
        poll_until(lambda: observer.latest(inv.groups[0]), what="an observation", timeout=30)

        # an operator's token (since #21: the metrics name every account and group)
        status, ctype, body = get(server, "/metrics", OPERATOR_TOKEN)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        found = samples(body.decode())
        g = {"account": ACCOUNT, "group": "a"}
        assert value(found, "harestart_restarts_total", **g, result="ok") == 1
        assert value(found, "harestart_restart_duration_seconds_count") == 1
        steps = restarter.view(inv.groups[0]).last_restart["result"]["steps"]  # type: ignore[index]
        replica_steps = [s for s in steps if s["action"] == "restart_replica"]
        assert value(found, "harestart_step_duration_seconds_count", step="restart_replica") == len(
            replica_steps
        )
        assert value(found, "harestart_group_state", **g, state="ACTIVE") == 1
        assert value(found, "harestart_group_state", **g, state="ERROR") == 0
        assert value(found, "harestart_mha_running", **g) == 1
        assert value(found, "harestart_lock_held", **g) == 0
        age = value(found, "harestart_observation_age_seconds", **g)
        assert age is not None and 0 <= age < 60
        # requests by method, route template and code; never a raw path
        assert (
            value(
                found,
                "harestart_http_requests_total",
                method="POST",
                route="/v1.0/{accountId}/ha/{haId}/action",
                code="202",
            )
            == 1
        )
        assert (
            value(
                found,
                "harestart_http_requests_total",
                method="POST",
                route="/v1.0/{accountId}/ha/{haId}/action",
                code="404",
            )
            == 1
        )
        assert "nope" not in body.decode()

        # the answer now carries the observation it used
        ha = json.loads(get(server, f"/v1.0/{ACCOUNT}/ha/a", TOKEN)[2])["ha_instance"]
        assert ha["observed_at"] is not None and ha["healthy"] is True
        assert ha["observation_age_s"] >= 0 and ha["mha"]["state"] == "PING_OK"
    finally:
        server.stop()
        observer.stop()


def test_metrics_is_get_only_and_counts_requests_by_route_and_code(tmp_path: Path) -> None:
    e, _ = make_env(tmp_path)
    metrics = Metrics(http=True)
    e.api.metrics = metrics
    e.server.app.metrics = metrics
    try:
        assert e.request("GET", DETAIL)[0] == 200
        assert e.request("GET", DETAIL)[0] == 200
        assert e.request("GET", LIST.replace("1234", "0000"), token=None)[0] == 401
        assert e.request("POST", "/metrics", "{}")[0] == 405
        status, headers, body = e.request("GET", "/metrics", token=API_OPERATOR_TOKEN)
        assert status == 200 and headers["content-type"].startswith("text/plain")
        found = samples(body.decode())
        detail = "/v1.0/{accountId}/ha/{haId}"
        n = "harestart_http_requests_total"
        assert value(found, n, method="GET", route=detail, code="200") == 2
        assert value(found, n, method="GET", route="/v1.0/{accountId}/ha", code="401") == 1
        assert value(found, n, method="POST", route="/metrics", code="405") == 1
        assert SEED_HA not in body.decode()
    finally:
        e.server.stop()


# --- the CLI's textfile ----------------------------------------------------------------------


def test_run_writes_a_textfile_that_parses_and_matches_the_run(
    lab: Callable[..., Lab],
    harestart: Harestart,
    tmp_path: Path,
) -> None:
    x = lab("a")
    path = tmp_path / "textfile" / "harestart.prom"
    path.parent.mkdir()
    r = harestart(x, "run", "--yes", "--format", "json", "--metrics-textfile", str(path))
    assert r.code == ExitCode.OK, r.err
    doc = r.json()
    found = samples(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["harestart.prom"]  # no temp file left
    g = {"account": ACCOUNT, "group": "a"}
    assert value(found, "harestart_restarts_total", **g, result="ok") == 1
    assert value(found, "harestart_restart_duration_seconds_count") == 1
    assert value(found, "harestart_restart_duration_seconds_sum") == pytest.approx(
        doc["duration_s"], abs=0.001
    )
    for kind in {s["action"] for s in doc["steps"]}:
        ran = [s for s in doc["steps"] if s["action"] == kind and s["duration_s"] is not None]
        assert value(found, "harestart_step_duration_seconds_count", step=kind) == len(ran)
    assert value(found, "harestart_group_state", **g, state="ACTIVE") == 1
    assert value(found, "harestart_group_state", **g, state="REBOOT") == 0
    assert value(found, "harestart_mha_running", **g) == 1
    assert value(found, "harestart_lock_held", **g) == 0
    assert value(found, "harestart_http_requests_total") is None  # a CLI run serves nothing

    # A run refused (another run holds the group) is counted as refused, the lock as held.
    x.lock("a")
    r = harestart(x, "run", "--yes", "--metrics-textfile", str(path))
    assert r.code == ExitCode.LOCKED
    found = samples(path.read_text())
    assert value(found, "harestart_restarts_total", **g, result="refused") == 1
    assert value(found, "harestart_restarts_total", **g, result="ok") is None
    assert value(found, "harestart_lock_held", **g) == 1
    assert value(found, "harestart_group_state", **g, state="REBOOT") == 1
