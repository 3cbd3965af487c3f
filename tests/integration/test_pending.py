"""Pending restarts found on real servers (#23), on both lab flavours: ``harestart status``
reports nothing on a fresh lab (the false-positive check against the real servers' full
variable lists and the lab's option files), and each change shows on the node it was made on
only, with the right reason. Every test puts the shared cluster back as it found it: an option
file removed, a variable set back, or mysqld restarted once its files were replaced (a running
mysqld keeps the replaced file open: only a restart ends that reason).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harestart.engine.state.journal import journal_path

from . import harestart_cli
from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import LabCluster, ready_count, uptime, wait_for

pytestmark = pytest.mark.integration

# Cannot change at run time on either flavour (MariaDB: READ_ONLY YES; MySQL: error 1238).
READ_ONLY_VARIABLE = "table_open_cache_instances"
# Changes at run time on both.
DYNAMIC_VARIABLE = "max_connections"


def status(cluster: LabCluster, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """``harestart status --format json`` as a user runs it: each node's document by name."""
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    out = harestart("status", str(inventory), "--format", "json", state_dir=tmp_path / "state")
    assert out.returncode == 0, out.stderr + out.stdout
    return {n["name"]: n for n in out.json()["nodes"]}


def reasons(node: dict[str, Any], key: str = "pending_restart") -> list[tuple[str, str]]:
    return [(r["kind"], r["subject"]) for r in node[key]]


def nothing_elsewhere(nodes: dict[str, dict[str, Any]], *changed: str) -> None:
    for name, node in nodes.items():
        if name not in changed:
            assert node["pending_restart"] == [], (name, node["pending_restart"])
            assert node["config_drift"] == [], (name, node["config_drift"])


def restart_mysqld(cluster: LabCluster, node: str) -> None:
    """The lab's own restart (what an operator runs), then until it replicates again."""
    code, out = cluster.exec(node, cluster.restart_command)
    assert code == 0, out
    wait_for(
        f"{node} replicating after its restart", lambda: cluster.replicating(node), timeout=120
    )


def server_file(cluster: LabCluster, node: str, pattern: str) -> str:
    """The path of the running mysqld's executable (``exe``) or of a library it maps."""
    pid = "$(cat /run/mysqld/mysqld.pid)"
    command = (
        f"readlink /proc/{pid}/exe"
        if pattern == "exe"
        else f"awk '$6 ~ /{pattern}/ {{ print $6; exit }}' /proc/{pid}/maps"
    )
    code, out = cluster.exec(node, command)
    assert code == 0 and out.strip().startswith("/"), out
    return out.strip()


def replace_file(cluster: LabCluster, node: str, path: str) -> None:
    """As a package upgrade does: a copy renamed over the original (a new inode)."""
    p = shlex.quote(path)
    code, out = cluster.exec(node, f"cp -p {p} {p}.new && mv {p}.new {p}")
    assert code == 0, out


@pytest.fixture
def option_file(cluster: LabCluster) -> Iterator[str]:
    """An extra option file the tests write on a node, removed afterwards from every node."""
    path = f"{cluster.config_dir}/99-pending-test.cnf"
    yield path
    for node in cluster.db_nodes:
        cluster.exec(node, ["rm", "-f", path])


def test_a_fresh_lab_has_nothing_pending(cluster: LabCluster, tmp_path: Path) -> None:
    nodes = status(cluster, tmp_path)
    assert set(nodes) == {"db1", "db2", "db3"}
    nothing_elsewhere(nodes)


def test_an_option_file_change(cluster: LabCluster, tmp_path: Path, option_file: str) -> None:
    """db2: a variable that cannot change at run time is pending; db3: a dynamic one is drift."""
    running = {
        node: cluster.sql(
            node, f"SELECT @@global.{READ_ONLY_VARIABLE} AS v, @@global.{DYNAMIC_VARIABLE} AS d"
        )[0]
        for node in ("db2", "db3")
    }
    other = int(running["db2"]["v"]) + 1
    more = int(running["db3"]["d"]) + 23
    cluster.exec(
        "db2",
        [
            "sh",
            "-c",
            f"printf '[mysqld]\\ntable-open-cache-instances = {other}\\n' > {option_file}",
        ],
    )
    cluster.exec(
        "db3", ["sh", "-c", f"printf '[mysqld]\\nmax_connections = {more}\\n' > {option_file}"]
    )
    nodes = status(cluster, tmp_path)
    nothing_elsewhere(nodes, "db2", "db3")
    (pending,) = nodes["db2"]["pending_restart"]
    assert (pending["kind"], pending["subject"]) == ("config", READ_ONLY_VARIABLE)
    assert (pending["configured"], pending["running"]) == (str(other), str(running["db2"]["v"]))
    assert "changes only at a restart" in pending["text"]
    assert nodes["db2"]["config_drift"] == []
    assert nodes["db3"]["pending_restart"] == []
    assert reasons(nodes["db3"], "config_drift") == [("config", DYNAMIC_VARIABLE)]
    assert (
        "set at run time, differs from the option file" in nodes["db3"]["config_drift"][0]["text"]
    )


def test_set_at_run_time_and_persisted(cluster: LabCluster, tmp_path: Path) -> None:
    """db3: SET GLOBAL of a dynamic variable is drift. MySQL: SET PERSIST_ONLY of a variable
    that cannot change at run time is a persisted pending restart; MariaDB has no SET PERSIST
    (it refuses the statement) and so never such a reason."""
    before = cluster.sql("db3", f"SELECT @@global.{DYNAMIC_VARIABLE} AS d")[0]["d"]
    cluster.sql("db3", f"SET GLOBAL {DYNAMIC_VARIABLE} = %s", (int(before) + 7,))
    persist = f"SET PERSIST_ONLY {READ_ONLY_VARIABLE} = 3"
    try:
        if cluster.flavor == "mysql":
            cluster.sql("db3", persist)
        else:
            with pytest.raises(Exception, match="1064"):
                cluster.sql("db3", persist)
        nodes = status(cluster, tmp_path)
    finally:
        cluster.sql("db3", f"SET GLOBAL {DYNAMIC_VARIABLE} = %s", (int(before),))
        if cluster.flavor == "mysql":
            cluster.sql("db3", f"RESET PERSIST IF EXISTS {READ_ONLY_VARIABLE}")
    nothing_elsewhere(nodes, "db3")
    assert reasons(nodes["db3"], "config_drift") == [("config", DYNAMIC_VARIABLE)]
    if cluster.flavor == "mysql":
        (pending,) = nodes["db3"]["pending_restart"]
        assert (pending["kind"], pending["subject"], pending["configured"]) == (
            "persisted",
            READ_ONLY_VARIABLE,
            "3",
        )
    else:
        assert nodes["db3"]["pending_restart"] == []


def test_a_replaced_server_binary(cluster: LabCluster, tmp_path: Path) -> None:
    binary = server_file(cluster, "db3", "exe")
    replace_file(cluster, "db3", binary)
    try:
        nodes = status(cluster, tmp_path)
    finally:
        restart_mysqld(cluster, "db3")
    nothing_elsewhere(nodes, "db3")
    assert reasons(nodes["db3"]) == [("binary", binary)]
    assert nodes["db3"]["config_drift"] == []
    nothing_elsewhere(status(cluster, tmp_path))  # the restart ended it


def test_a_replaced_shared_library(cluster: LabCluster, tmp_path: Path) -> None:
    library = server_file(cluster, "db2", "libssl")
    replace_file(cluster, "db2", library)
    try:
        nodes = status(cluster, tmp_path)
    finally:
        restart_mysqld(cluster, "db2")
    nothing_elsewhere(nodes, "db2")
    assert reasons(nodes["db2"]) == [("library", library)]
    nothing_elsewhere(status(cluster, tmp_path))


def test_an_operators_mark_shows_on_its_node_only_until_cleared(
    cluster: LabCluster, tmp_path: Path
) -> None:
    """mark-pending on db3 (kept in the state directory: the lab has no coordination service):
    status shows a ``mark`` reason with its text on db3 only; a hostile reason is refused
    with exit 2 and one line; clear-pending ends it."""
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    state = tmp_path / "state"
    planted = "/tmp/harestart-pwned"  # noqa: S108 (in the lab container: must never appear)
    why = f"kernel livepatch $(touch {planted}); DROP TABLE x; -- 'quoted'"
    out = harestart(
        "mark-pending", str(inventory), "--group", "lab", "--node", "db3", "--reason", why,
        state_dir=state,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    try:
        nodes = status(cluster, tmp_path)
        nothing_elsewhere(nodes, "db3")
        (mark,) = nodes["db3"]["pending_restart"]
        assert (mark["kind"], mark["subject"]) == ("mark", "db3")
        assert mark["text"].endswith(why)
        assert nodes["db3"]["config_drift"] == []
        code, _ = cluster.exec("db3", ["test", "-e", planted])
        assert code != 0  # the text went nowhere near a shell

        bad = harestart(
            "mark-pending", str(inventory), "--group", "lab", "--node", "db2",
            "--reason", "two\nlines", state_dir=state,
        )  # fmt: skip
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.count("\n") == 1 and "printable" in bad.stderr
    finally:
        out = harestart(
            "clear-pending", str(inventory), "--group", "lab", "--node", "db3", state_dir=state
        )
    assert out.returncode == 0 and "cleared 1 mark" in out.stdout, out.stderr
    nothing_elsewhere(status(cluster, tmp_path))


TENANT_TOKEN = "tenant-token-pending-0123456789"
OPERATOR_TOKEN = "operator-token-pending-0123456789"


def test_get_ha_shows_a_pending_option_change(
    cluster: LabCluster, tmp_path: Path, option_file: str
) -> None:
    """``harestart serve`` observes with detection: GET /ha/{id} gives db2's pending restart
    (an option file changed) in its node document, to a tenant without paths; the others have
    empty lists."""
    import requests

    running = cluster.sql("db2", f"SELECT @@global.{READ_ONLY_VARIABLE} AS v")[0]["v"]
    other = int(running) + 1
    cluster.exec(
        "db2",
        ["sh", "-c", f"printf '[mysqld]\\n{READ_ONLY_VARIABLE} = {other}\\n' > {option_file}"],
    )
    inventory = cluster.write_inventory(tmp_path / "inv.yml", group_id="ha1", account="1234")
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TENANT_TOKEN: "1234", OPERATOR_TOKEN: {"operator": True}}))
    tokens.chmod(0o600)
    served = harestart_cli.start_serve(
        inventory, state_dir=tmp_path, tokens=tokens, args=("--observe-interval", "2")
    )
    try:

        def nodes(token: str) -> dict[str, dict[str, Any]] | None:
            r = requests.get(
                served.url("/v1.0/1234/ha/ha1"), headers={"X-Auth-Token": token}, timeout=60
            )
            assert r.status_code == 200, r.text
            doc = r.json()["ha_instance"]
            found = {n["name"]: n for n in doc["replica_source"] + doc["replicas"]}
            return found if all("pending_restart" in n for n in found.values()) else None

        tenant = wait_for("the pending fields", lambda: nodes(TENANT_TOKEN), timeout=120)
        operator = nodes(OPERATOR_TOKEN)
    finally:
        harestart_cli.stop_serve(served.proc)
    assert operator is not None
    for seen in (tenant, operator):
        assert seen["db1"]["pending_restart"] == [] and seen["db3"]["pending_restart"] == []
        (reason,) = seen["db2"]["pending_restart"]
        assert (reason["kind"], reason["subject"]) == ("config", READ_ONLY_VARIABLE)
        assert (reason["configured"], reason["running"]) == (str(other), str(running))
    assert "the option file says" in operator["db2"]["pending_restart"][0]["text"]
    assert tenant["db2"]["pending_restart"][0]["text"] == (
        "an option that only takes effect at start differs from the running value"
    )


# --- acted on: run --only-pending -------------------------------------------------------------


def starts(cluster: LabCluster) -> dict[str, tuple[int, int]]:
    """Each node's mysqld starts so far and its Uptime."""
    return {
        n.name: (ready_count(cluster, n.name), uptime(cluster, n.name)) for n in cluster.db_nodes
    }


# Cannot change at run time on either flavour, and mysqld takes any value near its default as
# it is (MariaDB lowers table_open_cache_instances at start on the lab: a refused value).
RESTART_VARIABLE = "ft_min_word_len"


def test_run_only_pending_restarts_exactly_the_changed_replica(
    cluster: LabCluster, tmp_path: Path, option_file: str
) -> None:
    """db2's option file changes a variable that cannot change at run time: only db2
    restarts (the others' Uptime keeps growing), checked again after, then nothing is pending."""

    def value() -> int:
        return int(cluster.sql("db2", f"SELECT @@global.{RESTART_VARIABLE} AS v")[0]["v"])

    running = value()
    line = f"[mysqld]\\nft-min-word-len = {running + 1}\\n"
    cluster.exec("db2", ["sh", "-c", f"printf '{line}' > {option_file}"])
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    state = tmp_path / "state"
    before = starts(cluster)
    try:
        out = harestart(
            "run", str(inventory), "--yes", "--only-pending", "--format", "json", state_dir=state
        )
        assert out.returncode == 0, out.stderr + out.stdout
        assert out.json()["ok"] is True
        assert f"pending: config: {RESTART_VARIABLE}" in out.stderr
        assert "not pending: left running: db1 (source)" in out.stderr
        after = starts(cluster)
        assert after["db2"][0] == before["db2"][0] + 1
        for node in ("db1", "db3"):
            assert after[node][0] == before[node][0], node  # not restarted
            assert after[node][1] > before[node][1], node  # its Uptime kept growing
        assert value() == running + 1
        nothing_elsewhere(status(cluster, tmp_path))
    finally:  # the lab as it was: the file gone, db2 back on the lab's value
        cluster.exec("db2", ["rm", "-f", option_file])
        if value() != running:
            restart_mysqld(cluster, "db2")


def test_a_value_mysqld_adjusts_at_start_fails_the_restarts_check(
    cluster: LabCluster, tmp_path: Path, option_file: str
) -> None:
    """db3's option file asks for a value below the variable's minimum: mysqld starts with
    the minimum instead, so the restart did not end what it was for and its step fails with
    the reason (exit 1); the failure policy starts MHA again."""
    running = int(cluster.sql("db3", f"SELECT @@global.{RESTART_VARIABLE} AS v")[0]["v"])
    cluster.exec("db3", ["sh", "-c", f"printf '[mysqld]\\nft-min-word-len = 0\\n' > {option_file}"])
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    try:
        out = harestart(
            "run", str(inventory), "--yes", "--only-pending", "--format", "json",
            state_dir=tmp_path / "state",
        )  # fmt: skip
        assert out.returncode == 1, out.stderr + out.stdout
        failure = out.json()["failure"]
        assert failure["host"] == "db3", failure
        assert f"still pending after its restart: config: {RESTART_VARIABLE}" in failure["reason"]
        cluster.wait_mha()
    finally:
        cluster.exec("db3", ["rm", "-f", option_file])
        restart_mysqld(cluster, "db3")
    assert int(cluster.sql("db3", f"SELECT @@global.{RESTART_VARIABLE} AS v")[0]["v"]) == running
    nothing_elsewhere(status(cluster, tmp_path))


def two_groups(cluster: LabCluster, other: LabCluster, path: Path) -> Path:
    """One inventory of both clusters (each group with its own connection settings)."""
    groups = []
    for gid, c in (("big", cluster), ("small", other)):
        doc = yaml.safe_load(
            c.write_inventory(path.parent / f"{gid}.yml", group_id=gid).read_text()
        )
        g = doc["groups"][0]
        for key in ("ssh", "mysql", "health", "restart_command"):
            g[key] = doc["defaults"][key]
        groups.append(g)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_run_all_only_pending_touches_only_the_group_with_something_pending(
    cluster: LabCluster, cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    """Two groups; db3 of the first runs a replaced binary (as a package upgrade leaves it).
    The second group, with nothing pending, keeps every mysqld and its MHA running."""
    other = cluster_factory(1, flavor=cluster.flavor)
    inventory = two_groups(cluster, other, tmp_path / "inv.yml")
    replace_file(cluster, "db3", server_file(cluster, "db3", "exe"))
    before, other_before = starts(cluster), starts(other)
    try:
        out = harestart(
            "run", str(inventory), "--all", "--yes", "--only-pending", "--format", "json",
            state_dir=tmp_path / "state",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr + out.stdout
        docs = {d["group"]: d for d in out.json()}
        assert docs["small"] == {
            "group": "small", "account": "100001", "ok": True, "skipped": "nothing pending"
        }  # fmt: skip
        assert docs["big"]["ok"] is True
        after, other_after = starts(cluster), starts(other)
        assert [n for n in after if after[n][0] != before[n][0]] == ["db3"]
        for node, (count, up) in other_after.items():
            assert count == other_before[node][0] and up > other_before[node][1], node
        assert other.mha_status()[0] == 0  # MHA running
        assert not journal_path(tmp_path / "state", "100001", "small").exists()  # no run began
        nothing_elsewhere(status(cluster, tmp_path))
    finally:
        if ready_count(cluster, "db3") == before["db3"][0]:
            restart_mysqld(cluster, "db3")
