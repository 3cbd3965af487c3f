"""``harestart plan`` for people: one line per action, in the words of the server it meets.

The words: the version ``--probe`` found, else the inventory's ``flavor:``, else every
server's form. The checks and the wrappers commands are sent in: with ``--verbose``. The JSON
keeps every form and wrapper whatever the wording (its golden files are in test_plan.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bench.scale import fleet_inventory
from harestart import cli
from harestart.domain.commands import detached, surviving_disconnect
from harestart.domain.dialect import dialect_for
from harestart.domain.group import Group
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Plan, PlanOptions
from harestart.domain.switch import SourceStrategy
from harestart.domain.topology import Flavor, ServerInfo, flavor_from_version, version_tuple
from harestart.errors import InventoryError
from harestart.inventory.load import parse_inventory
from harestart.views.plan import (
    EVERY_FORM,
    INDENTED_UP_TO,
    Wording,
    inventory_wording,
    observed_wording,
    pieces,
    render_json,
    render_text,
)
from tests.unit.plan_match import missing_from_plan
from tests.unit.test_cli_run import Lab

SWITCH = PlanOptions(source_strategy=SourceStrategy.SWITCHOVER)


def inventory(flavor: str | None = None) -> str:
    """The lab's shape: db1 the source, db2 and db3 replicas, a replication account."""
    said = f"  flavor: {flavor}\n" if flavor else ""
    return (
        "defaults:\n"
        "  mysql: {user: harestart, password: pw-for-tests}\n"
        "  replication: {user: repl, password: repl-secret}\n"
        "  restart_command: service mariadb restart\n"
        f"{said}"
        "groups:\n  - id: lab\n    account: '1'\n"
        "    source: {name: db1, address: 10.0.0.1}\n"
        "    replicas:\n"
        "      - {name: db2, address: 10.0.0.2}\n"
        "      - {name: db3, address: 10.0.0.3}\n"
        "    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}\n"
    )


def group(flavor: str | None = None) -> Group:
    return parse_inventory(inventory(flavor), "inv.yml").groups[0]


def found(g: Group, version: str) -> Wording:
    """What ``plan --probe`` found: every database node answering with ``version``."""
    nodes = tuple(
        NodeState(n.name, n.role, info=_info(version, i)) for i, n in enumerate(g.db_nodes, 1)
    )
    return observed_wording(GroupState(g.id, nodes, None, "not asked"))


def _info(version: str, server_id: int) -> ServerInfo:
    return ServerInfo(
        version=version,
        flavor=flavor_from_version(version),
        version_tuple=version_tuple(version),
        server_id=server_id,
        read_only=server_id != 1,
        uptime=100,
        hostname=f"db{server_id}",
    )


def action_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("do:", "finally:"))]


def every_action(plan: Plan) -> int:
    return sum(len(s.actions) + len(s.closing) + len(s.cleanup) for s in plan.steps)


# --- one line per action ---------------------------------------------------------------------


@pytest.mark.parametrize("options", [PlanOptions(), SWITCH], ids=["restart", "switchover"])
def test_one_line_per_step_and_per_action_and_nothing_else(options: PlanOptions) -> None:
    plan = build_plan(group(), options)
    lines = render_text(plan).splitlines()
    assert len(action_lines("\n".join(lines))) == every_action(plan)
    assert len(lines) == 1 + len(plan.steps) + every_action(plan)
    assert not any("gate:" in ln for ln in lines)
    assert lines[0].endswith("; every check and exact command: plan --verbose")
    assert "  3. [restart_replica] restart mysqld on replica db2 (4 checks)" in lines


def test_the_inventorys_command_without_its_wrapper_by_default() -> None:
    g = group()
    text = render_text(build_plan(g))
    assert (
        "do: on db1: run `service mariadb restart` (kept running if the SSH session drops) "
        "(only if not already restarted by the interrupted attempt being resumed)"
    ) in action_lines(text)
    start = f"do: on mha: start `{g.mha.start_command}` detached (only if MHA was running"
    assert any(ln.startswith(start) for ln in action_lines(text))
    assert surviving_disconnect("service mariadb restart") not in text
    assert "mktemp" not in text and "setsid" not in text and "nohup" not in text


# --- the words -------------------------------------------------------------------------------


def test_without_a_flavor_every_servers_form() -> None:
    text = render_text(build_plan(group()))
    assert (
        "do: on db2: `STOP REPLICA IO_THREAD` (MariaDB, MySQL < 8.0.22: `STOP SLAVE IO_THREAD`)"
        in text
    )
    assert inventory_wording(group()) == EVERY_FORM and "words" not in text.splitlines()[0]


def test_mariadb_words_from_the_inventorys_flavor() -> None:
    g = group("mariadb")
    text = render_text(build_plan(g), inventory_wording(g))
    assert "in the words of MariaDB (`flavor: mariadb`)" in text.splitlines()[0]
    assert "do: on db2: `STOP SLAVE IO_THREAD`" in action_lines(text)
    assert "REPLICA" not in text and "MySQL" not in text and "super_read_only" not in text
    assert (
        "do: on db1: `SET GLOBAL read_only = <ON|OFF as before>` (only if it came back "
        "different from before the restart)"
    ) in action_lines(text)
    switch = render_text(build_plan(g, SWITCH), inventory_wording(g))
    assert "REPLICA" not in switch and "SOURCE_HOST" not in switch
    assert (
        "do: on db1: `SET GLOBAL read_only = ON`"
        " (only if not already done by the interrupted attempt being resumed)"
    ) in action_lines(switch)
    assert (
        "do: on db2: `STOP SLAVE` then `RESET SLAVE ALL` then `SET GLOBAL read_only = OFF`"
        " (only if not already done by the interrupted attempt being resumed)"
        in action_lines(switch)
    )
    assert (
        "do: on db1: `STOP SLAVE` (only if it is a replica) then "
        "`SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos` then `CHANGE MASTER TO "
        "MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='***', "
        "MASTER_USE_GTID=slave_pos` then `START SLAVE`"
    ) in action_lines(switch)
    assert "repl-secret" not in switch


def test_mysql_84_words_from_the_versions_found() -> None:
    g = group()  # no flavor: the probe decides
    wording = found(g, "8.4.3")
    text = render_text(build_plan(g), wording)
    assert "in the words of the versions found" in text.splitlines()[0]
    assert "do: on db2: `STOP REPLICA IO_THREAD`" in action_lines(text)
    assert "SLAVE" not in text and "MariaDB" not in text
    assert (
        "do: on db1: `SET GLOBAL read_only = <ON|OFF as before>` then "
        "`SET GLOBAL super_read_only = <ON|OFF as before>` (only if it came back different "
        "from before the restart)"
    ) in action_lines(text)
    switch = render_text(build_plan(g, SWITCH), wording)
    assert "SLAVE" not in switch and "MASTER" not in switch and "gtid_slave_pos" not in switch
    assert (
        "do: on db1: `SET GLOBAL read_only = ON` then `SET GLOBAL super_read_only = ON`"
        " (only if not already done by the interrupted attempt being resumed)"
    ) in action_lines(switch)
    assert (
        "do: on db2: `STOP REPLICA` then `RESET REPLICA ALL` then `SET GLOBAL read_only = OFF` "
        "(implies super_read_only = OFF) "
        "(only if not already done by the interrupted attempt being resumed)"
    ) in action_lines(switch)
    assert (
        "do: on db1: `STOP REPLICA` (only if it is a replica) then `CHANGE REPLICATION SOURCE "
        "TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='***', "
        "SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1` then `START REPLICA`"
    ) in action_lines(switch)
    # `flavor: mysql` says the same (MySQL 8.0.22 and later speak these words).
    mysql = render_text(build_plan(group("mysql"), SWITCH), inventory_wording(group("mysql")))
    assert action_lines(mysql) == action_lines(switch)


def test_old_mysql_found_speaks_its_own_words() -> None:
    """A MySQL before 8.0.22 (found by --probe) gets the SLAVE words and super_read_only."""
    text = render_text(build_plan(group()), found(group(), "5.7.44-log"))
    assert "do: on db2: `STOP SLAVE IO_THREAD`" in action_lines(text)
    assert "`SET GLOBAL super_read_only = <ON|OFF as before>`" in text


def test_a_host_the_probe_could_not_ask_keeps_every_form() -> None:
    g = group()
    wording = Wording({"db2": dialect_for("10.11.6-MariaDB")}, "in the words of the versions found")
    text = render_text(build_plan(g), wording)
    assert "do: on db2: `STOP SLAVE IO_THREAD`" in action_lines(text)
    assert (
        "do: on db3: `STOP REPLICA IO_THREAD` (MariaDB, MySQL < 8.0.22: `STOP SLAVE IO_THREAD`)"
        in action_lines(text)
    )


# --- --verbose -------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [PlanOptions(), SWITCH], ids=["restart", "switchover"])
def test_verbose_adds_every_gate_and_each_command_as_sent(options: PlanOptions) -> None:
    g = group()
    plan = build_plan(g, options)
    text = render_text(plan, verbose=True)
    for s in plan.steps:
        for gate in s.gates:
            assert f"gate: {gate.describe()}" in text
        for a in (*s.actions, *s.closing):
            assert f"do: {a.describe()}" in text  # the JSON's `do`, word for word
        for a in s.cleanup:
            assert f"finally: {a.describe()}" in text
    assert f"`{surviving_disconnect('service mariadb restart')}`" in text
    assert f"`{detached(g.mha.start_command, g.mha.log)}`" in text
    assert "plan --verbose" not in text and "checks)" not in text


def test_verbose_in_one_servers_words() -> None:
    g = group("mariadb")
    text = render_text(build_plan(g), inventory_wording(g), verbose=True)
    assert f"`{surviving_disconnect('service mariadb restart')}`" in text and "gate: " in text
    assert "do: on db2: `STOP SLAVE IO_THREAD`" in action_lines(text) and "REPLICA" not in text


# --- the JSON keeps its content --------------------------------------------------------------


@pytest.mark.parametrize("options", [PlanOptions(), SWITCH], ids=["restart", "switchover"])
def test_the_json_is_the_same_whatever_the_flavor(options: PlanOptions) -> None:
    plain = render_json([build_plan(group(), options)])
    assert render_json([build_plan(group("mariadb"), options)]) == plain
    assert render_json([build_plan(group("mysql"), options)]) == plain
    assert "(MariaDB, MySQL < 8.0.22: `START SLAVE IO_THREAD`)" in plain and "mktemp" in plain


# --- what is printed in a server's words is what it is sent ----------------------------------


@pytest.mark.parametrize(
    "options", [PlanOptions(preflush=True), SWITCH], ids=["restart", "switchover"]
)
def test_the_mariadb_words_show_every_change_a_run_sends_to_mariadb(options: PlanOptions) -> None:
    """The fakes are MariaDB 10.11: each change the run sends them (recorded as the real
    adapters send it) is in the plan said in MariaDB's words."""
    from tests.unit.test_plan_complete import run_recorded
    from tests.unit.test_switchover import source_world, switch_group

    world = source_world()
    _, sent, result = run_recorded(world, options, group=switch_group())
    assert result.ok, result.failure
    plan = build_plan(switch_group(), options)
    mariadb = Wording({n.name: dialect_for("10.11.6-MariaDB") for n in switch_group().db_nodes})
    worded = render_text(plan, mariadb, verbose=True)
    assert "REPLICA" not in worded
    # The plan's actions as the worded text says them, in the shape plan_match reads.
    said = [
        {
            "steps": [
                {
                    "actions": [
                        {
                            "host": a.host,
                            "do": a.describe(mariadb.of(a.host)),
                            "runs_on": a.to_dict().get("runs_on"),
                        }
                        for a in (*step.actions, *step.closing, *step.cleanup)
                    ]
                }
                for step in plan.steps
            ]
        }
    ]
    assert all(str(a["do"]) in worded for st in said[0]["steps"] for a in st["actions"])
    assert missing_from_plan(said, sent) == []


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield Lab(tmp_path, ["a"])
    structlog.reset_defaults()


def test_plan_probe_speaks_the_words_of_the_versions_found(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --probe` on the fakes (MariaDB 10.11.6): MariaDB's words, no flavor needed."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["plan", str(lab.inventory), "--probe"], env=lab.env)
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    assert "in the words of the versions found" in out.splitlines()[0]
    assert "  observed: a2 (replica): mariadb 10.11.6-MariaDB" in out
    assert "do: on a2: `STOP SLAVE IO_THREAD`" in action_lines(out) and "REPLICA" not in out
    with pytest.raises(SystemExit):
        cli.main(["plan", str(lab.inventory), "--probe", "--verbose"], env=lab.env)
    verbose, _ = capsys.readouterr()
    assert "gate: " in verbose and "mktemp" in verbose and "REPLICA" not in verbose


def test_flavor_is_an_inventory_key_checked_like_any_other() -> None:
    assert group("mariadb").flavor is Flavor.MARIADB and group("mysql").flavor is Flavor.MYSQL
    assert group().flavor is None
    with pytest.raises(InventoryError) as exc:
        parse_inventory(inventory("postgres"), "inv.yml")
    assert exc.value.problems == [
        "inv.yml:5: defaults.flavor: Input should be 'mariadb' or 'mysql'"
    ]


# --- a fleet's plan, written one group at a time ----------------------------------------------


@pytest.mark.parametrize("count", [1, INDENTED_UP_TO, INDENTED_UP_TO + 1, 45])
def test_the_pieces_are_exactly_the_whole_json_and_text(count: int) -> None:
    # `plan` writes each group's plan as it is built; joined, the pieces are json.dumps of the
    # list (indented for a handful, compact beyond) and the texts with a blank line between.
    groups = parse_inventory(fleet_inventory(count), "fleet.yml").groups
    plans = [build_plan(g) for g in groups]
    wordings = [inventory_wording(g) for g in groups]
    joined = "".join(pieces(iter(plans), iter(wordings), count, fmt="json", verbose=False))
    indent = 2 if count <= INDENTED_UP_TO else None
    assert joined == json.dumps([p.to_dict() for p in plans], indent=indent) == render_json(plans)
    for verbose in (False, True):
        text = "".join(pieces(iter(plans), iter(wordings), count, fmt="text", verbose=verbose))
        assert text == "\n\n".join(render_text(p, verbose=verbose) for p in plans)


def test_plan_of_a_fleet_prints_every_group_once_in_order(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(fleet_inventory(30))
    groups = parse_inventory(inventory.read_text(), str(inventory), tmp_path).groups
    done = subprocess.run(
        [sys.executable, "-m", "harestart", "plan", str(inventory), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == json.dumps([build_plan(g).to_dict() for g in groups]) + "\n"
