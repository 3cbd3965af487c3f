"""`harestart plan` lists every state-changing statement and command a real run sends, on both
lab flavours (MariaDB 10.11, MySQL 9.7), for a restart and for a switchover.

The statements are captured where they arrive: each server's general log (a table, switched on
in its configuration too, so it survives the run's restarts; MySQL logs them raw, not
rewritten), harestart's own session only (its user, since the run began). The SSH commands
and, again, the statements as sent come from the run's JSON log (``ssh.command``,
``mysql.query``). Each one that changes state must appear in the plan printed before
(``plan --format json``: what each action does, every statement quoted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.plan_match import changes_state, missing_from_plan

from .harestart_cli import harestart, log_events
from .lab import LabCluster
from .switching import configure_source_read_only, switch_inventory

pytestmark = pytest.mark.integration

# What pymysql sends on every new connection to set up its own session (character set,
# autocommit): it changes nothing on the server.
_SESSION_SETUP = ("SET NAMES ", "SET AUTOCOMMIT = ")
_LOG_FILE = "61-harestart-general-log.cnf"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _from_harestart_log(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(host, command or statement) in the order the run sent them, as its log says."""
    out: list[tuple[str, str]] = []
    for e in events:
        if e["event"] == "ssh.command":
            out.append((e["host"], e["command"]))
        elif e["event"] == "mysql.query":
            statement = e["statement"]
            for arg in e.get("args") or ():
                statement = statement.replace("%s", _literal(arg), 1)
            out.append((e["host"], statement))
    return out


def log_everything(cluster: LabCluster) -> dict[str, str]:
    """Switch every server's general log on (now, and in its configuration for the run's
    restarts); the time on each server from which harestart's statements count."""
    options = {"log_output": "TABLE", "general_log": "ON"}
    if cluster.flavor == "mysql":
        options["log_raw"] = "ON"  # the statement as received, not rewritten
    since = {}
    for n in cluster.db_nodes:
        text = "[mysqld]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
        path = f"{cluster.config_dir}/{_LOG_FILE}"
        code, out = cluster.exec(n.name, ["sh", "-c", f"printf '%s' '{text}' > {path}"])
        assert code == 0, f"{n.name}: could not write {path}: {out}"
        for name, value in options.items():
            cluster._sql_exec(n, f"SET GLOBAL {name} = '{value}'", None)
        since[n.name] = str(cluster.sql(n.name, "SELECT NOW(6) AS t")[0]["t"])
    return since


def _from_general_logs(cluster: LabCluster, since: dict[str, str]) -> list[tuple[str, str]]:
    """(host, statement) harestart's user sent each server since ``since``, as logged there
    (a secret it sent shown as the plan shows it: '***')."""
    out: list[tuple[str, str]] = []
    for n in cluster.db_nodes:
        rows = cluster.sql(
            n.name,
            "SELECT CONVERT(argument USING utf8mb4) AS statement FROM mysql.general_log "
            "WHERE event_time >= %s AND command_type = 'Query' AND user_host LIKE %s "
            "ORDER BY event_time",
            (since[n.name], f"{cluster.admin_user}[%"),
        )
        for row in rows:
            statement = str(row["statement"]).replace(cluster.repl_password, "***")
            if not statement.startswith(_SESSION_SETUP):
                out.append((n.name, statement))
    return out


def _plan(inventory: Path, tmp_path: Path, *options: str) -> list[dict[str, Any]]:
    out = harestart("plan", str(inventory), "--format", "json", *options, state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    plans: list[dict[str, Any]] = out.json()
    return plans


def _run(cluster: LabCluster, inventory: Path, tmp_path: Path, *options: str) -> Path:
    log_file = tmp_path / "run.jsonl"
    out = harestart(
        "run", str(inventory), "--yes", "--format", "json", *options,
        "--log-file", str(log_file),
        state_dir=tmp_path,
        env={"LAB_REPL_PASSWORD": cluster.repl_password},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.json()["state"] == "ACTIVE"
    return log_file


def test_every_change_a_lab_restart_sends_is_in_the_plan(
    cluster: LabCluster, tmp_path: Path
) -> None:
    """--preflush: the most statements a restart sends."""
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    plans = _plan(inventory, tmp_path, "--preflush")
    since = log_everything(cluster)
    log_file = _run(cluster, inventory, tmp_path, "--preflush")

    sent = _from_harestart_log(log_events(log_file))
    received = _from_general_logs(cluster, since)
    changes = [s for _, s in sent if changes_state(s)]
    # The run did change things, of every kind the plan promises.
    assert any(s.startswith("masterha_stop") for s in changes), changes
    assert any("masterha_manager" in s for s in changes), changes
    assert sum(cluster.restart_command in s for s in changes) == 3, changes
    word = "REPLICA" if cluster.flavor == "mysql" else "SLAVE"
    for host, statement in (
        ("db1", "SET GLOBAL innodb_max_dirty_pages_pct = 0"),
        ("db2", f"STOP {word} IO_THREAD"),
        ("db3", f"START {word} IO_THREAD"),
    ):
        assert any(h == host and s.startswith(statement) for h, s in received), (host, received)
    if cluster.flavor == "mysql":  # the source's last change before its restart (#24)
        offline = "SET GLOBAL offline_mode = ON"
        assert any(h == "db1" and s.startswith(offline) for h, s in received), received
    assert any(s.startswith(("SELECT", "SHOW")) for _, s in received)  # reads are there too
    assert missing_from_plan(plans, sent) == []
    assert missing_from_plan(plans, received) == []


def test_every_change_a_lab_switchover_sends_is_in_the_plan(
    cluster: LabCluster, tmp_path: Path
) -> None:
    """The source role moves to a replica and back (the group ends as it began)."""
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    configure_source_read_only(cluster)
    options = ("--source-strategy", "switchover")
    plans = _plan(inventory, tmp_path, *options)
    since = log_everything(cluster)
    log_file = _run(cluster, inventory, tmp_path, *options)

    sent = _from_harestart_log(log_events(log_file))
    received = _from_general_logs(cluster, since)
    assert cluster.repl_password not in repr(sent)
    word = "REPLICA" if cluster.flavor == "mysql" else "SLAVE"
    change = "CHANGE REPLICATION SOURCE TO" if cluster.flavor == "mysql" else "CHANGE MASTER TO"
    statements = [s for _, s in received]
    assert f"RESET {word} ALL" in statements, statements
    assert sum(s.startswith(change) for s in statements) == 4, statements  # 2 switches x 2
    assert any("SET GLOBAL read_only = ON" in s for s in statements), statements
    assert missing_from_plan(plans, sent) == []
    assert missing_from_plan(plans, received) == []
