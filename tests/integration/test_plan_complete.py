"""`harestart plan` lists every state-changing statement and command a real run sends.

A MariaDB lab group is restarted with --preflush (the most statements); the run's JSON log
holds every SSH command (``ssh.command``) and every SQL statement with its arguments
(``mysql.query``). Each one that changes state must appear in the plan printed before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.plan_match import changes_state, missing_from_plan

from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events

pytestmark = pytest.mark.integration


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _sent(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(host, command or statement) in the order the run sent them."""
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


def test_every_change_a_lab_restart_sends_is_in_the_plan(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(2, flavor="mariadb")
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    # --verbose: each command exactly as sent (the text shows the inventory's by default).
    plan = harestart("plan", str(inventory), "--preflush", "--verbose", state_dir=tmp_path)
    assert plan.returncode == 0, plan.stderr

    log_file = tmp_path / "run.jsonl"
    out = harestart(
        "run",
        str(inventory),
        "--yes",
        "--preflush",
        "--format",
        "json",
        "--log-file",
        str(log_file),
        state_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    sent = _sent(log_events(log_file))
    changes = [statement for _, statement in sent if changes_state(statement)]
    # The run did change things, of every kind the plan promises.
    assert any(s.startswith("masterha_stop") for s in changes), changes
    assert any("masterha_manager" in s for s in changes), changes
    assert sum(cluster.restart_command in s for s in changes) == 3, changes
    assert any(s.startswith("SET GLOBAL innodb_max_dirty_pages_pct") for s in changes)
    assert "STOP SLAVE IO_THREAD" in changes and "START SLAVE IO_THREAD" in changes
    assert any(s.startswith(("SELECT", "SHOW")) for _, s in sent)  # reads are logged too
    assert missing_from_plan(plan.stdout, sent) == []
