"""The API's contract, fuzzed by schemathesis against a live ``harestart serve`` on a real lab
cluster: no 5xx, no undocumented status code, content type, header or body, 405 for every
undeclared method, the token enforced, no request over the timeout.

The schema is the file the package ships (``harestart/http/openapi.json``; the first test
checks the live server serves exactly it); the configuration, with its fixed seed, is
``schemathesis.toml`` next to this file, so a failure reproduces by running this module again.

The cluster must not change while requests are fuzzed, so the inventory's group is the real 1+1
MariaDB cluster (GET observes real nodes) with its MHA manager's SSH port pointed at a closed
port on 127.0.0.1: preflight checks that every node *and the MHA manager* answer before it
touches anything, so every restart is refused at preflight (422, since #22 the API checks as
`harestart run` does before it answers), as a real run would be with an unreachable failover
manager (restarting without being able to stop MHA is unsafe).
The last test proves nothing changed: no mysqld restarted, MHA still monitors.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml

from . import harestart_cli, lab
from .harestart_cli import log_events_tolerant
from .lab import LabCluster, ready_count

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "harestart" / "http" / "openapi.json"
CONFIG = Path(__file__).with_name("schemathesis.toml")

# The seed's example values; schemathesis.toml sends this token and these ids.
SEED_TOKEN = "87c6033c-9ff6-405f-943e-2deb73f278b7"
SEED_ACCOUNT = "1234"
SEED_HA = "3a493f8c-9b9c-4ca1-845b-e3689abb1f5c"
OTHER_TOKEN = "token-of-account-5678-aaaaaaaa"  # valid, for another account: 403 paths


# Loaded when the module is collected (schemathesis 4.32's lazy from_fixture does not work with
# pytest 9: it sets Function._nodeid); the live server's URL is given with each request.
schema = schemathesis.openapi.from_path(CONTRACT, config=schemathesis.Config.from_path(CONFIG))


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((lab.HOST, 0))
        return int(s.getsockname()[1])


class Fuzzed:
    def __init__(self, cluster: LabCluster, served: harestart_cli.Served) -> None:
        self.cluster = cluster
        self.served = served
        self.url = f"http://{lab.HOST}:{served.port}"
        self.starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}


@pytest.fixture(scope="module")
def fuzzed(lab_docker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("contract")
    cluster = lab.start_cluster(1, artifacts=lab.ARTIFACTS_DIR / "test_api_contract")
    served: harestart_cli.Served | None = None
    try:
        inventory = cluster.write_inventory(tmp / "inv.yml", group_id=SEED_HA, account=SEED_ACCOUNT)
        doc = yaml.safe_load(inventory.read_text())
        doc["groups"][0]["mha"]["manager"]["ssh"]["port"] = closed_port()
        inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        tokens = tmp / "tokens.json"
        tokens.write_text(json.dumps({SEED_TOKEN: SEED_ACCOUNT, OTHER_TOKEN: "5678"}))
        tokens.chmod(0o600)
        served = harestart_cli.start_serve(inventory, state_dir=tmp, tokens=tokens)
        yield Fuzzed(cluster, served)
    except BaseException:
        cluster.save_logs(lab.ARTIFACTS_DIR / "test_api_contract" / cluster.name)
        raise
    finally:
        if served is not None:
            harestart_cli.stop_serve(served.proc)
        cluster.stop()


def test_the_live_server_serves_the_shipped_contract(fuzzed: Fuzzed) -> None:
    r = requests.get(f"{fuzzed.url}/openapi.json", timeout=10)  # no token
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.content == CONTRACT.read_bytes()


@schema.parametrize()
def test_fuzzed_requests_conform_to_the_contract(case: Any, fuzzed: Fuzzed) -> None:
    case.call_and_validate(base_url=fuzzed.url)


def test_fuzzing_changed_nothing_and_restarts_were_refused_at_preflight(fuzzed: Fuzzed) -> None:
    events = log_events_tolerant(fuzzed.served.log)
    statuses = {e["status"] for e in events if e["event"] == "api.request"}
    # The fuzzing reached the handlers behind the token, not only the faults in front of them.
    assert {200, 400, 401, 405, 422} <= statuses, statuses
    assert not {s for s in statuses if s >= 500}, statuses
    refused = [e for e in events if e["event"] == "api.restart.refused"]
    assert any(e["error_type"] == "PreflightRefused" for e in refused), refused
    assert not [e for e in events if e["event"] in ("api.restart.finished", "api.restart.error")]
    for n in fuzzed.cluster.db_nodes:
        assert ready_count(fuzzed.cluster, n.name) == fuzzed.starts[n.name], n.name
    assert "PING_OK" in fuzzed.cluster.mha_status()[1]
