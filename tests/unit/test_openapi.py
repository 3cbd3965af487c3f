"""The API's contract, ``harestart/http/openapi.json``: valid OpenAPI 3.1, the same routes as
the server's route table (both ways), the seed's faults, served without a token, shipped in
the package, and the server's real answers conform to its schemas."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from harestart.domain.result import GroupStatus
from harestart.http import api as api_mod
from harestart.http.api import FAULTS, ROUTES, openapi_document
from harestart.views.metrics import Metrics

from .test_api import (
    DETAIL,
    LIST,
    OPERATOR_TOKEN,
    SEED_HA,
    SEED_TOKEN,
    Env,
    _quiet_logs,  # noqa: F401 (autouse fixture)
    make_env,
)

REPO = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def contract() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_document())
    return doc


def conforms(instance: Any, component: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/<component>`` (JSON Schema 2020-12,
    references resolved inside the document)."""
    schema = {**contract(), "$ref": f"#/components/schemas/{component}"}
    OAS31Validator(schema).validate(instance)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e, _ = make_env(tmp_path)
    try:
        yield e
    finally:
        e.server.stop()


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = contract()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    doc = contract()
    routes = {(r.template, m.lower()) for r in ROUTES for m in r.methods}
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert routes == documented
    for r, method in ((route, m) for route in ROUTES for m in route.methods):
        op = doc["paths"][r.template][method.lower()]
        # a route without a token says so; the others need the document's X-Auth-Token scheme
        security = op.get("security", doc["security"])
        assert (security == []) is (not r.authenticated), r.template
        if r.authenticated and not r.operator_only:  # checked against the path's account
            assert "accountId" in r.pattern.groupindex, r.template
        names = {p["name"] for p in op.get("parameters", []) if "name" in p}
        assert set(r.pattern.groupindex) <= names, r.template  # every path parameter described


def test_every_fault_is_documented_with_the_seeds_body_shape() -> None:
    doc = contract()
    responses = doc["components"]["responses"]
    assert set(responses) == set(FAULTS.values())
    for code, name in FAULTS.items():
        inner = doc["components"]["schemas"][name]["properties"][name]["properties"]
        assert inner["code"]["const"] == code and inner["name"]["const"] == name
        conforms({name: {"code": code, "name": name, "message": "m", "request_id": "r"}}, name)
    # every operation documents 400, 500 and 503 (possible on any request) and only known faults
    for item in doc["paths"].values():
        for op in (v for m, v in item.items() if m in METHODS):
            codes = {int(c) for c in op["responses"]}
            assert {400, 500, 503} <= codes
            assert codes - {200, 202} <= set(FAULTS)


def test_get_openapi_json_needs_no_token_and_serves_the_shipped_file(env: Env) -> None:
    status, headers, body = env.request("GET", "/openapi.json", token=None)
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == openapi_document() == (REPO / "harestart/http/openapi.json").read_bytes()
    status, headers, _ = env.request("POST", "/openapi.json", "{}", token=None)
    assert status == 405 and headers["allow"] == "GET, HEAD"  # HEAD with GET since #21


def test_the_document_ships_as_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "openapi.json" in project["tool"]["setuptools"]["package-data"]["harestart.http"]


def test_real_answers_conform_to_the_documented_schemas(env: Env) -> None:
    env.restarter.last = {
        "request_id": "r1",
        "accepted_at": "2026-11-27T01:50:49.035Z",
        "running": False,
        "ok": True,
        "current_step": None,
        "progress": None,
        "result": {"state": "ACTIVE"},
        "error": None,
    }
    status, _, body = env.request("GET", DETAIL)
    assert status == 200
    doc = json.loads(body)
    assert set(doc) == {"ha_instance"}
    conforms(doc["ha_instance"], "HaInstance")
    status, _, body = env.request("GET", f"{LIST}?limit=1")
    assert status == 200
    conforms(json.loads(body), "HaInstanceList")
    status, _, body = env.request("GET", LIST, token="not-a-token-of-anyone")
    assert status == 401
    conforms(json.loads(body), "unauthorized")


def test_a_degraded_group_while_a_restart_runs_conforms_too(tmp_path: Path) -> None:
    """The shapes a healthy group does not show: an unreachable node (errors, no observed
    fields), a broken replica, REBOOT with the running step, a last restart that failed."""
    e, restarter = make_env(tmp_path)
    try:
        e.world.nodes["db1"].never_comes_back = True
        e.world.nodes["db1"].down_until = e.world.clock.now()
        e.world.nodes["db2"].sql = "No"
        e.world.nodes["db2"].sql_error = "Error 1062: Duplicate entry"
        restarter.states[SEED_HA] = GroupStatus.REBOOT
        restarter.last = {
            "request_id": "r1",
            "accepted_at": "2026-11-27T01:50:49.035Z",
            "running": True,
            "ok": None,
            "current_step": "restart_replica:db2",
            "progress": "db2: waiting",
            "result": None,
            "error": {"name": "PreflightRefused", "message": "db1 unreachable"},
        }
        status, _, body = e.request("GET", DETAIL)
        assert status == 200
        ha = json.loads(body)["ha_instance"]
        conforms(ha, "HaInstance")
        assert ha["state"] == "REBOOT" and ha["replica_source"][0]["reachable"] is False
        assert {n["status"] for n in ha["replica_source"] + ha["replicas"]} == {
            "SHUTDOWN",
            "REBOOT",
        }
    finally:
        e.server.stop()


def test_limit_bounds_in_the_document_match_the_server() -> None:
    op = contract()["paths"][f"/{api_mod.VERSION}/{{accountId}}/ha"]["get"]
    limit = next(p for p in op["parameters"] if p.get("name") == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, api_mod.MAX_LIMIT)


# --- defects schemathesis found (tests/integration/test_api_contract.py) ---------------------


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "QUERY"])
def test_standard_methods_the_resource_does_not_take_get_405_with_allow(
    env: Env, method: str
) -> None:
    """schemathesis's unsupported_method check sent TRACE and QUERY: http.server answered
    501 (a server error) because it had no do_TRACE; a method HTTP defines is recognised, so
    the answer is 405 with Allow. A method nobody defines (BREW) still gets 501."""
    get = "GET, HEAD"  # since #21, HEAD is answered wherever GET is
    for path, allow in [(DETAIL, get), ("/openapi.json", get), (f"{DETAIL}/action", "POST")]:
        status, headers, body = env.request(method, path)
        assert status == 405 and headers["allow"] == allow, (path, body)
        assert json.loads(body)["badMethod"]["code"] == 405


def test_a_group_not_observed_yet_conforms_too(env: Env) -> None:
    """serve answers before the first background observation of a group: null observation
    fields, nodes UNKNOWN, the state from the lock and journal alone."""

    class NotYet:
        def observe(self, group: Any, *, context: object = None) -> None:
            return None

    env.api.observer = NotYet()
    status, _, body = env.request("GET", DETAIL)
    assert status == 200
    ha = json.loads(body)["ha_instance"]
    conforms(ha, "HaInstance")
    assert ha["observed_at"] is None and ha["healthy"] is None
    assert {n["status"] for n in ha["replica_source"] + ha["replicas"]} == {"UNKNOWN"}
    assert all(n["reachable"] is None for n in ha["replica_source"] + ha["replicas"])


def test_metrics_answers_conform(env: Env) -> None:
    op = contract()["paths"]["/metrics"]["get"]
    operator = OPERATOR_TOKEN
    status, _, body = env.request("GET", "/metrics", token=operator)  # an API without metrics
    assert status == 404 and "404" in op["responses"]
    conforms(json.loads(body), "itemNotFound")
    env.api.metrics = Metrics(http=True)  # as serve builds it
    for token, code, fault_name in [(None, 401, "unauthorized"), (SEED_TOKEN, 403, "forbidden")]:
        status, _, body = env.request("GET", "/metrics", token=token)  # since #21
        assert status == code and str(code) in op["responses"]
        conforms(json.loads(body), fault_name)
    status, headers, body = env.request("GET", "/metrics", token=operator)
    assert status == 200 and "200" in op["responses"]
    assert headers["content-type"].startswith("text/plain")
    assert b"harestart_restarts_total" in body or b"# HELP" in body
