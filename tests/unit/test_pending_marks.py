"""Operators' pending-restart marks (#23): the record, its two stores (the state directory and
a coordination service through tooz's file driver), the commands and their exit codes, and
where a mark shows (status, plan --probe, GET /ha/{id}, the metric)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harestart.adapters.coordination import ToozCoordination
from harestart.adapters.pending_marks import ToozMarks
from harestart.adapters.protocols import PendingMarks
from harestart.domain.group import Group
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.pending import PendingReport, Reason, ReasonKind
from harestart.domain.pending.marks import (
    MAX_REASON,
    MarkRefused,
    OperatorMark,
    parse_marks,
    with_marks,
)
from harestart.domain.result import GroupStatus
from harestart.engine.run import Environment
from harestart.engine.state.marks import LocalMarks
from harestart.errors import ExitCode, StateDirError, UsageError
from harestart.http.api import tenant_pending
from harestart.inventory.load import parse_inventory
from harestart.views.metrics import Metrics, snapshot_of

from . import test_cli_run
from .test_cli_run import ACCOUNT, Lab, Outcome, inventory_text
from .test_openapi import conforms

Harestart = Callable[..., Outcome]
lab = test_cli_run.lab  # the fixtures of the CLI's tests
harestart = test_cli_run.harestart

HOSTILE = [
    "",
    "   ",
    "two\nlines",
    "a\rcarriage return",
    "escape \x1b[31mred",
    "nul \x00 byte",
    "x" * (MAX_REASON + 1),
]


def mark(node: str | None = "a2", reason: str = "libc upgraded") -> OperatorMark:
    return OperatorMark(node, reason, "ops", "bastion1", "2026-12-07T02:00:00+00:00")


def group(tmp_path: Path, coordination: str | None = None) -> Group:
    text = inventory_text(["a"])
    if coordination:
        text = text.replace("defaults: {", f"defaults: {{coordination: {{url: '{coordination}'}}, ")
    return parse_inventory(text, str(tmp_path / "inv.yml")).groups[0]


# --- the record ---------------------------------------------------------------------------


@pytest.mark.parametrize("reason", HOSTILE)
def test_a_reason_that_is_not_bounded_printable_text_is_refused(reason: str) -> None:
    with pytest.raises(MarkRefused) as refused:
        mark(reason=reason)
    assert reason.strip() == "" or reason not in str(refused.value)  # never echoed


def test_a_reason_of_the_limit_and_of_any_script_is_taken() -> None:
    assert mark(reason="é" * MAX_REASON).reason == "é" * MAX_REASON
    assert mark(reason="$(rm -rf /); DROP TABLE t; -- '\"`").as_reason().kind is ReasonKind.MARK


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"marks": {}},
        {"marks": [], "more": 1},
        {"marks": [{"node": "a2"}]},
        {"marks": [{**mark().to_dict(), "reason": 3}]},
        {"marks": [{**mark().to_dict(), "extra": "x"}]},
        {"marks": [{**mark().to_dict(), "reason": "bad\nline"}]},
        {"marks": [mark().to_dict()] * 101},
    ],
)
def test_a_stored_document_that_is_not_marks_is_refused(doc: object) -> None:
    with pytest.raises(MarkRefused):
        parse_marks(doc)


def test_marks_become_reasons_on_their_node_or_every_node() -> None:
    marks = (mark("a2", "one"), mark(None, "all"))
    report = with_marks(PendingReport(), "a2", marks)
    assert report is not None
    assert [r.kind for r in report.pending_restart] == [ReasonKind.MARK, ReasonKind.MARK]
    assert report.pending_restart[0].text.endswith(": one")
    assert "the whole group" in report.pending_restart[1].text
    other = with_marks(None, "a3", marks)
    assert other is not None and [r.subject for r in other.pending_restart] == ["group"]
    assert with_marks(None, "a3", (mark("a2"),)) is None


# --- the two stores -----------------------------------------------------------------------


def stores(tmp_path: Path) -> list[tuple[Group, PendingMarks]]:
    local = group(tmp_path)
    shared = group(tmp_path, f"file://{tmp_path / 'service'}")
    assert shared.coordination is not None
    return [
        (local, LocalMarks(tmp_path / "state")),
        (shared, ToozMarks(ToozCoordination(shared.coordination, shared.id))),
    ]


@pytest.mark.parametrize("which", ["state directory", "coordination service"])
def test_a_store_keeps_one_mark_per_node_and_clears_by_node_or_group(
    tmp_path: Path, which: str
) -> None:
    g, store = stores(tmp_path)[0 if which == "state directory" else 1]
    try:
        assert store.pending_marks(g) == ()
        store.add_pending_mark(g, mark("a2", "first"))
        store.add_pending_mark(g, mark("a2", "second"))  # replaces the first
        store.add_pending_mark(g, mark("a3", "third"))
        store.add_pending_mark(g, mark(None, "everything"))
        assert sorted(m.reason for m in store.pending_marks(g)) == [
            "everything",
            "second",
            "third",
        ]
        assert store.clear_pending_marks(g, frozenset({"a2"})) == 1
        assert sorted(m.reason for m in store.pending_marks(g)) == ["everything", "third"]
        assert store.clear_pending_marks(g, None) == 2
        assert store.pending_marks(g) == ()
        assert store.clear_pending_marks(g, None) == 0
    finally:
        store.close()


def test_the_state_directory_file_is_owner_only_and_read_back_typed(tmp_path: Path) -> None:
    g, store = stores(tmp_path)[0]
    store.add_pending_mark(g, mark())
    (path,) = (tmp_path / "state" / "marks").iterdir()
    assert path.name == f"{ACCOUNT}+a.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "marks").stat().st_mode & 0o777 == 0o700
    path.write_text(json.dumps({"marks": [{**mark().to_dict(), "reason": "x\u0007"}]}))
    with pytest.raises(StateDirError) as refused:
        store.pending_marks(g)
    assert str(path) in str(refused.value) and "not a marks file" in str(refused.value)
    path.write_bytes(b"[" * 300_000)
    with pytest.raises(StateDirError, match="more than"):
        store.pending_marks(g)
    path.unlink()
    os.symlink("/etc/passwd", path)
    with pytest.raises(StateDirError, match="symbolic link"):
        store.pending_marks(g)


def test_a_record_in_the_service_that_is_not_a_mark_is_refused_and_cleared(
    tmp_path: Path,
) -> None:
    g, store = stores(tmp_path)[1]
    assert isinstance(store, ToozMarks)
    coordination = store._coordination
    try:
        coordination.add_record(f"harestart~{ACCOUNT}~a~pending~", '{"node": "a2"}')
        with pytest.raises(UsageError, match="not a mark"):
            store.pending_marks(g)
        assert store.clear_pending_marks(g, None) == 1
        assert store.pending_marks(g) == ()
    finally:
        store.close()


# --- the commands ---------------------------------------------------------------------------


def status_nodes(x: Lab, run: Harestart) -> dict[str, Any]:
    r = run(x, "status", "--format", "json")
    return {n["name"]: n for n in r.json()["nodes"]}


def marks_of(node: dict[str, Any]) -> list[str]:
    return [r["text"] for r in node["pending_restart"] if r["kind"] == "mark"]


def test_mark_and_clear_show_in_status_on_the_right_node(
    lab: Callable[..., Lab],
    harestart: Harestart,
) -> None:
    x = lab("a")
    r = harestart(x, "mark-pending", "--group", "a", "--node", "a2", "--reason", "libfoo 1.2")
    assert r.code == ExitCode.OK and "node a2 of group a" in r.out, r.err
    nodes = status_nodes(x, harestart)
    assert marks_of(nodes["a1"]) == marks_of(nodes["a3"]) == []
    (text,) = marks_of(nodes["a2"])
    assert text.endswith(": libfoo 1.2") and "this node marked by" in text
    r = harestart(x, "mark-pending", "--group", "a", "--reason", "kernel")
    assert r.code == ExitCode.OK and "every node of group a" in r.out
    assert all(len(marks_of(n)) >= 1 for n in status_nodes(x, harestart).values())
    r = harestart(x, "clear-pending", "--group", "a", "--node", "a2")
    assert r.code == ExitCode.OK and "cleared 1 mark of group a (node a2)" in r.out
    nodes = status_nodes(x, harestart)
    assert [len(marks_of(n)) for n in nodes.values()] == [1, 1, 1]  # the group's mark stays
    r = harestart(x, "clear-pending", "--group", "a")
    assert r.code == ExitCode.OK and "cleared 1 mark of group a (every mark)" in r.out
    assert all(marks_of(n) == [] for n in status_nodes(x, harestart).values())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--group", "zz", "--reason", "x"], "no group 'zz'"),
        (["--group", "a", "--node", "zz", "--reason", "x"], "no database node 'zz'"),
        (["--group", "a", "--node", "mha-a", "--reason", "x"], "no database node 'mha-a'"),
        (["--group", "a", "--reason", "two\nlines"], "printable text only"),
        (["--group", "a", "--reason", "y" * 201], "at most 200"),
        (["--group", "a", "--reason", ""], "the reason is empty"),
        (["--group", "a"], "Missing option '--reason'"),
    ],
)
def test_mark_pending_refuses_with_one_line_and_exit_2(
    lab: Callable[..., Lab],
    harestart: Harestart,
    args: list[str],
    said: str,
) -> None:
    x = lab("a")
    r = harestart(x, "mark-pending", *args)
    assert r.code == ExitCode.USAGE and said in r.err and "Traceback" not in r.err
    assert not (x.state / "marks").exists() or not any((x.state / "marks").iterdir())


def test_clear_pending_of_an_unknown_node_is_exit_2(
    lab: Callable[..., Lab],
    harestart: Harestart,
) -> None:
    r = harestart(lab("a"), "clear-pending", "--group", "a", "--node", "zz")
    assert r.code == ExitCode.USAGE and "no database node 'zz'" in r.err


def test_an_unsafe_marks_file_is_refused_by_the_commands_and_unknown_in_status(
    lab: Callable[..., Lab],
    harestart: Harestart,
) -> None:
    x = lab("a")
    assert harestart(x, "mark-pending", "--group", "a", "--reason", "r").code == 0
    (path,) = (x.state / "marks").iterdir()
    path.write_text("not json")
    r = harestart(x, "mark-pending", "--group", "a", "--reason", "r")
    assert r.code == ExitCode.USAGE and "not a marks file" in r.err
    nodes = status_nodes(x, harestart)
    for node in nodes.values():
        unknown = [r for r in node["pending_restart"] if r["subject"] == "marks"]
        assert unknown and unknown[0]["kind"] == "unknown"


def test_plan_probe_names_each_nodes_pending_reasons(
    lab: Callable[..., Lab],
    harestart: Harestart,
) -> None:
    x = lab("a")
    harestart(x, "mark-pending", "--group", "a", "--node", "a3", "--reason", "new libssl")
    r = harestart(x, "plan", "--group", "a", "--probe")
    assert r.code == ExitCode.OK, r.err
    (line,) = [s for s in r.out.splitlines() if "observed: a3: pending restart:" in s]
    assert "; mark: this node marked by " in line and line.endswith(": new libssl")
    assert not any("new libssl" in s for s in r.out.splitlines() if "observed: a2:" in s)
    doc = json.loads(harestart(x, "plan", "--group", "a", "--probe", "--format", "json").out)
    observed = doc[0]["observed"] if isinstance(doc, list) else doc["observed"]
    assert any(o.startswith("a3: pending restart:") and "new libssl" in o for o in observed)


# --- the API and the metric -----------------------------------------------------------------

LIBRARY = Reason(ReasonKind.LIBRARY, "/usr/lib/libssl.so.3", "/usr/lib/libssl.so.3 replaced")
CONFIG = Reason(ReasonKind.CONFIG, "table_open_cache_instances", "the option file says 9", "9", "8")


def node_doc() -> dict[str, Any]:
    report = with_marks(PendingReport((LIBRARY, CONFIG), (CONFIG,)), "a2", (mark(),))
    node = NodeState("a2", "replica", pending=report).to_dict()
    return {
        "id": "a2",
        "name": "a2",
        "role": "replica",
        "status": "ACTIVE",
        "hostname": "10.0.0.2",
        "ha_id": "a",
        **{k: v for k, v in node.items() if k not in ("name", "role")},
    }


def test_the_node_document_with_reasons_conforms_for_operators_and_tenants() -> None:
    doc = node_doc()
    conforms(doc, "Node")
    tenant = tenant_pending(doc)
    conforms(tenant, "Node")
    kinds = [r["kind"] for r in tenant["pending_restart"]]
    assert kinds == ["library", "config", "mark"]
    shown = json.dumps(tenant)
    assert "/usr/lib" not in shown and "libc upgraded" not in shown and "bastion1" not in shown
    config = tenant["pending_restart"][1]
    assert (config["subject"], config["configured"], config["running"]) == (
        "table_open_cache_instances",
        "9",
        "8",
    )
    assert tenant["config_drift"][0]["subject"] == "table_open_cache_instances"
    assert "libc upgraded" in json.dumps(doc)  # the operator's view keeps it


def test_get_ha_gives_pending_fields_to_the_operator_and_the_tenant_view(
    tmp_path: Path,
) -> None:
    from .test_api import DETAIL, OPERATOR_TOKEN, SEED_TOKEN, make_env

    def observe(g: Group) -> GroupState:
        report = with_marks(PendingReport((LIBRARY,)), g.replicas[0].name, (mark(None, "why"),))
        nodes = tuple(NodeState(n.name, n.role, pending=report) for n in g.db_nodes)
        return GroupState(g.id, nodes, None, "not asked")

    env, _ = make_env(tmp_path, observe=observe)
    try:
        bodies = {}
        for who, token in (("tenant", SEED_TOKEN), ("operator", OPERATOR_TOKEN)):
            status, _, body = env.request("GET", DETAIL, token=token)
            assert status == 200
            bodies[who] = json.loads(body)["ha_instance"]
            conforms(bodies[who], "HaInstance")
    finally:
        env.server.stop()
    operator_nodes = bodies["operator"]["replica_source"] + bodies["operator"]["replicas"]
    tenant_nodes = bodies["tenant"]["replica_source"] + bodies["tenant"]["replicas"]
    assert all(len(n["pending_restart"]) == 2 for n in operator_nodes + tenant_nodes)
    assert "/usr/lib/libssl" in json.dumps(operator_nodes)
    assert "/usr/lib/libssl" not in json.dumps(tenant_nodes)
    assert "why" in operator_nodes[0]["pending_restart"][1]["text"]


def test_the_metric_has_one_series_per_node_and_reason_kind_and_drops_cleared_ones() -> None:
    nodes = (
        NodeState("a1", "source", pending=PendingReport()),
        NodeState("a2", "replica", pending=with_marks(PendingReport((LIBRARY,)), "a2", (mark(),))),
        NodeState("a3", "replica", pending=PendingReport((LIBRARY, LIBRARY))),
    )
    snapshots = [
        snapshot_of("1", "a", GroupStatus.ACTIVE, GroupState("a", nodes, None), lock_held=False)
    ]
    metrics = Metrics()
    metrics.watch_groups(lambda: snapshots)
    text = metrics.exposition().decode()
    series = sorted(
        line for line in text.splitlines() if line.startswith("harestart_node_pending_restart{")
    )
    assert series == [
        'harestart_node_pending_restart{account="1",group="a",node="a2",reason="library"} 1.0',
        'harestart_node_pending_restart{account="1",group="a",node="a2",reason="mark"} 1.0',
        'harestart_node_pending_restart{account="1",group="a",node="a3",reason="library"} 1.0',
    ]
    cleared = (nodes[0], NodeState("a2", "replica", pending=PendingReport((LIBRARY,))), nodes[2])
    snapshots[0] = snapshot_of(
        "1", "a", GroupStatus.ACTIVE, GroupState("a", cleared, None), lock_held=False
    )
    text = metrics.exposition().decode()
    assert 'node="a2",reason="mark"' not in text and 'node="a2",reason="library"' in text


def test_environment_defaults_to_the_state_directory_store(tmp_path: Path) -> None:
    env = Lab(tmp_path, ["a"]).env
    assert isinstance(env, Environment)
    assert isinstance(env.marks(group(tmp_path), tmp_path), LocalMarks)
    with pytest.raises(Exception, match="coordination"):
        env.marks(group(tmp_path, f"file://{tmp_path}/s"), tmp_path)
