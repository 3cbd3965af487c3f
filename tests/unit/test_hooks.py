"""Hooks: the inventory's format, the plan, the real subprocess adapter, and the executor
(against the fakes) running them at their points and stopping when one fails."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from harestart.adapters.hooks import SubprocessHookRunner
from harestart.domain.group import Group, HookPoint
from harestart.domain.hook_protocol import Exchange
from harestart.domain.hooks import (
    HookOutcome,
    RunHook,
    hook_environment,
    hook_variables,
    switch_hook,
)
from harestart.domain.plan.build import build_plan
from harestart.domain.result import RunResult, StepStatus
from harestart.domain.secret import Secret
from harestart.engine.sequencer.executor import Executor
from harestart.engine.sequencer.waiting import poll_until
from harestart.engine.state.journal import Journal, journal_path
from harestart.errors import InventoryError
from harestart.inventory.load import parse_inventory
from harestart.views.plan import render_json, render_text
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld

DATA = Path(__file__).resolve().parents[1] / "data"
HOOKS_INVENTORY = DATA / "hooks.yml"

# --- the inventory ---------------------------------------------------------------------------


def inventory(defaults_hooks: str = "", group_hooks: str = "", replicas: int = 2) -> str:
    reps = "".join(
        f"      - {{name: db{i}, address: 10.0.0.{i}}}\n" for i in range(2, replicas + 2)
    )
    return (
        "defaults:\n"
        "  mysql: {user: harestart, password: pw-for-tests}\n"
        "  health: {restart_timeout: 30, catchup_timeout: 30, failover_timeout: 20}\n"
        f"{defaults_hooks}"
        "groups:\n  - id: lab\n    account: '1'\n"
        "    source: {name: db1, address: 10.0.0.1}\n"
        f"    replicas:\n{reps}"
        "    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}\n"
        f"{group_hooks}"
    )


BOTH = (
    "  hooks:\n"
    "    before_node_restart: {command: 'hooks/drain.sh', timeout: 5}\n"
    "    after_node_restart: hooks/ready.sh\n"
)


def hooked_group(replicas: int = 2, base: Path = Path("/inv")) -> Group:
    return parse_inventory(inventory(BOTH, replicas=replicas), "inv.yml", base_dir=base).groups[0]


def test_hooks_resolve_with_defaults_the_string_form_and_the_inventory_directory() -> None:
    g = hooked_group()
    before, after = g.hooks.before_node_restart, g.hooks.after_node_restart
    assert before is not None and after is not None
    assert (before.command, before.timeout, before.cwd) == ("hooks/drain.sh", 5.0, "/inv")
    assert (after.command, after.timeout, after.cwd) == ("hooks/ready.sh", 60.0, "/inv")
    assert g.hooks.before_switch is None and g.hooks.after_switch is None


def test_a_groups_hook_replaces_the_default_for_that_point_only() -> None:
    own = "    hooks:\n      after_node_restart: {command: 'echo mine', timeout: 2}\n"
    g = parse_inventory(inventory(BOTH, own), "inv.yml", base_dir=Path("/x")).groups[0]
    assert g.hooks.after_node_restart is not None
    assert g.hooks.after_node_restart.command == "echo mine"
    assert g.hooks.before_node_restart is not None
    assert g.hooks.before_node_restart.command == "hooks/drain.sh"


def test_no_hooks_no_hook_actions() -> None:
    g = parse_inventory(inventory(), "inv.yml").groups[0]
    assert not any(isinstance(a, RunHook) for s in build_plan(g).steps for a in s.actions)
    assert "hook" not in render_text(build_plan(g))


@pytest.mark.parametrize(
    ("hooks", "line", "message"),
    [
        ("  hooks:\n    before_restart: x\n", 5, "unknown key 'before_restart'"),
        ("  hooks:\n    after_node_restart: {command: x, timeout: 0}\n", 5, "timeout"),
        ("  hooks:\n    after_node_restart: {command: x, timout: 3}\n", 5, "timout"),
        ("  hooks:\n    after_switch: ''\n", 5, "empty"),
    ],
)
def test_a_bad_hook_is_refused_at_load_with_file_and_line(
    hooks: str, line: int, message: str
) -> None:
    with pytest.raises(InventoryError) as err:
        parse_inventory(inventory(hooks), "inv.yml")
    assert f"inv.yml:{line}" in str(err.value) and message in str(err.value)


# --- the plan --------------------------------------------------------------------------------


def test_each_hook_is_an_action_of_its_nodes_step_in_order() -> None:
    g = hooked_group()
    plan = build_plan(g)
    for step in plan.steps:
        if step.action.value not in ("restart_replica", "restart_source"):
            assert not any(isinstance(a, RunHook) for a in (*step.actions, *step.closing))
            continue
        first = step.actions[0]
        assert isinstance(first, RunHook) and first.point is HookPoint.BEFORE_NODE_RESTART
        assert first.host == step.host  # before anything of the step changes
        (last,) = step.closing  # after the checks after
        assert isinstance(last, RunHook) and last.point is HookPoint.AFTER_NODE_RESTART
    text = render_text(plan, verbose=True)
    assert "do: hook before_node_restart: `hooks/drain.sh` (timeout 5 s)" in text
    assert "do: hook after_node_restart: `hooks/ready.sh` (timeout 60 s)" in text
    replica = text.split("[restart_replica] restart mysqld on replica db2")[1].split("  4. ")[0]
    lines = [ln.strip() for ln in replica.splitlines() if ln.strip()]
    assert lines[0].startswith("do: hook before_node_restart")
    assert lines[1].startswith("do: on db2: run `systemctl restart mysql`")
    assert lines[-1].startswith("do: hook after_node_restart")
    step3 = json.loads(render_json([plan]))[0]["steps"][2]
    assert step3["actions"][0] == {
        "kind": "run_hook",
        "host": "db2",
        "do": "hook before_node_restart: `hooks/drain.sh` (timeout 5 s)",
        "point": "before_node_restart",
        "command": "hooks/drain.sh",
        "timeout_s": 5.0,
        "runs_on": "bastion",
    }
    assert step3["actions_after_checks"][0]["point"] == "after_node_restart"


def test_switch_hooks_and_their_environment() -> None:
    text = (
        "  hooks:\n    before_switch: 'vip move'\n    after_switch: {command: 'vip check', "
        "timeout: 9}\n"
    )
    g = parse_inventory(inventory(text), "inv.yml").groups[0]
    before = switch_hook(g, HookPoint.BEFORE_SWITCH, "db1", "db2")
    after = switch_hook(g, HookPoint.AFTER_SWITCH, "db1", "db2")
    assert before is not None and after is not None
    assert before.describe() == "hook before_switch: `vip move` (timeout 60 s)"
    env = hook_variables(g, after, "run7")
    assert env == {
        "HARESTART_HOOK": "after_switch",
        "HARESTART_ACCOUNT": "1",
        "HARESTART_GROUP": "lab",
        "HARESTART_RUN_ID": "run7",
        "HARESTART_NODE": "db1",
        "HARESTART_NODE_HOST": "10.0.0.1",
        "HARESTART_ROLE": "replica",
        "HARESTART_OLD_SOURCE": "db1",
        "HARESTART_NEW_SOURCE": "db2",
        "HARESTART_STRATEGY": "switchover",
    }
    assert hook_environment(g, after, "run7", {}) == env  # nothing inherited from nothing
    assert hook_environment(g, before, "r", {})["HARESTART_ROLE"] == "source"
    assert switch_hook(hooked_group(), HookPoint.BEFORE_SWITCH, "db1", "db2") is None
    with pytest.raises(ValueError, match="not a switch hook point"):
        switch_hook(g, HookPoint.AFTER_NODE_RESTART, "db1", "db2")


# --- the real adapter ------------------------------------------------------------------------


def test_adapter_exit_status_output_env_cwd_and_closed_stdin(tmp_path: Path) -> None:
    runner = SubprocessHookRunner()
    out = runner.run(
        'echo "out $HARESTART_NODE in $(pwd)"; echo err >&2; cat; exit 3',
        cwd=str(tmp_path),
        env={"HARESTART_NODE": "db2"},
        timeout=10,
    )
    assert out.exit_status == 3 and not out.ok and not out.timed_out
    assert out.output == f"out db2 in {tmp_path}\nerr\n"  # `cat` read nothing: stdin closed
    assert "exited 3 after" in out.status_text()
    # Exactly the environment it is given (#21 probe 8: no longer harestart's own on top).
    assert "PATH" in os.environ
    ok = runner.run('echo "${PATH-unset}"', cwd=str(tmp_path), env={"PATH": "/x:/bin"}, timeout=10)
    assert ok.ok and ok.output == "/x:/bin\n"


def test_adapter_keeps_only_the_end_of_the_output(tmp_path: Path) -> None:
    runner = SubprocessHookRunner(tail_bytes=100)
    out = runner.run("seq 1 10000", cwd=str(tmp_path), env={}, timeout=10)
    assert out.ok and len(out.output) == 100 and out.output.endswith("9999\n10000\n")


def test_adapter_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    runner = SubprocessHookRunner()
    t0 = time.monotonic()
    out = runner.run(
        f"echo started; sleep 30 & echo $! > {pidfile}; wait",
        cwd=str(tmp_path),
        env={},
        timeout=1,
    )
    assert time.monotonic() - t0 < 10
    assert out.timed_out and out.exit_status is None and not out.ok
    assert out.status_text() == "timed out after 1 s (killed)"
    assert out.output == "started\n"
    child = int(pidfile.read_text())
    # the background child died with its group
    poll_until(lambda: not alive(child) or None, what="the child's end", timeout=30)


def alive(pid: int) -> bool:
    """Running (a killed child not yet reaped by its new parent is a zombie: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_adapter_a_missing_directory_is_a_harestart_error(tmp_path: Path) -> None:
    from harestart.errors import RemoteError

    with pytest.raises(RemoteError, match="bastion: run hook"):
        SubprocessHookRunner().run("true", cwd=str(tmp_path / "nope"), env={}, timeout=5)


# --- the executor, on the fakes --------------------------------------------------------------


class FakeProgram:
    """A persistent hook program on the fakes: answers the hello with every point, records
    each event as the world's ``hook:<point>`` event, answers ok (or ``fail``'s answer)."""

    def __init__(self, runner: FakeHookRunner, env: Mapping[str, str]) -> None:
        self.runner, self.env = runner, dict(env)
        self.lines: list[dict[str, Any]] = []
        self.stopped: str | None = None

    def exchange(self, line: str, *, timeout: float) -> Exchange:
        msg = json.loads(line)
        self.lines.append(msg)
        if "harestart-hook" in msg:
            return Exchange(json.dumps(msg), 0.01)
        world = self.runner.world
        world.events.append((f"hook:{msg['point']}", msg["node"], world.clock.now()))
        answer = self.runner.answers.get((msg["point"], msg["node"]), {"ok": True})
        return Exchange(json.dumps({"id": msg["id"], **answer}), 0.01, output="event handled\n")

    def stop(self, *, polite: bool = True) -> str:
        self.stopped = "exited 0" if polite else "terminated"
        return self.stopped


class FakeHookRunner:
    """Records each hook with its environment as an event of the world; scripted to fail.
    Persistent programs (``start``) are ``FakeProgram``s, kept in ``programs``."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.calls: list[dict[str, str]] = []
        self.fail: dict[tuple[str, str], HookOutcome] = {}
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}  # a persistent answer
        self.programs: list[FakeProgram] = []

    def start(self, command: str, *, cwd: str, env: Mapping[str, str]) -> FakeProgram:
        self.programs.append(FakeProgram(self, {**env, "command": command, "cwd": cwd}))
        return self.programs[-1]

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        point, node = env["HARESTART_HOOK"], env["HARESTART_NODE"]
        self.calls.append({**env, "command": command, "cwd": cwd, "timeout": f"{timeout:g}"})
        self.world.events.append((f"hook:{point}", node, self.world.clock.now()))
        failed = self.fail.get((point, node))
        if failed is not None:
            return failed
        return HookOutcome(command, 0, 0.1, "fine\n", timeout)


def execute(
    world: FakeWorld,
    hooks: FakeHookRunner,
    journal: Journal | None = None,
    resume: bool = False,
) -> RunResult:
    group = hooked_group(len(world.nodes) - 1)
    return Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        wall=world.clock.now,
        journal=journal,
        resume=resume,
        hooks=hooks,
    ).run()


def order(world: FakeWorld) -> list[tuple[str, str]]:
    return [(k, h) for k, h, _ in world.events if k.startswith("hook:") or k == "restart"]


def test_hooks_run_around_each_restart_in_order_with_their_environment() -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world)
    with capture_logs() as logs:
        result = execute(world, hooks)
    assert result.ok, result.failure
    expected = []
    for node in ("db2", "db3", "db1"):
        expected += [("hook:before_node_restart", node), ("restart", node)]
        expected += [("hook:after_node_restart", node)]
    assert order(world) == expected
    # after_node_restart only once the node's checks held: it is back and replicating
    back = {h: t for k, h, t in world.events if k == "back"}
    after = {h: t for k, h, t in world.events if k == "hook:after_node_restart"}
    assert all(after[n] >= back[n] for n in back)
    first = hooks.calls[0]
    assert first["HARESTART_HOOK"] == "before_node_restart" and first["HARESTART_NODE"] == "db2"
    assert first["HARESTART_NODE_HOST"] == "10.0.0.2" and first["HARESTART_ROLE"] == "replica"
    assert first["HARESTART_OLD_SOURCE"] == first["HARESTART_NEW_SOURCE"] == "db1"
    assert first["HARESTART_STRATEGY"] == "restart" and first["HARESTART_GROUP"] == "lab"
    assert first["HARESTART_ACCOUNT"] == "1" and first["cwd"] == "/inv"
    assert first["command"] == "hooks/drain.sh" and first["timeout"] == "5"
    assert hooks.calls[-1]["HARESTART_ROLE"] == "source"
    finished = [e for e in logs if e["event"] == "hook.finished"]
    assert len(finished) == 6 and {"point", "host", "exit_status", "duration_s"} <= set(finished[0])
    assert not any("fine" in str(e) for e in logs)  # a hook's output is never logged


def test_a_failing_before_hook_leaves_the_node_unrestarted_and_fails_the_run() -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world)
    Secret("hunter2-the-proxy-pw")  # a known secret the hook happens to echo
    hooks.fail[("before_node_restart", "db3")] = HookOutcome(
        "hooks/drain.sh", 4, 0.2, "draining db3\nproxy said no (pw hunter2-the-proxy-pw)\n", 5
    )
    with capture_logs() as logs:
        result = execute(world, hooks)
    assert not result.ok and result.failure is not None
    assert result.failure.step == "restart_replica:db3" and result.failure.host == "db3"
    assert world.nodes["db3"].restarts == 0 and world.nodes["db1"].restarts == 0
    assert world.nodes["db2"].restarts == 1
    reason = result.failure.reason
    assert reason.startswith("hook before_node_restart for db3 failed: `hooks/drain.sh` exited 4")
    assert "\n  | proxy said no (pw ***)" in reason and "hunter2" not in json.dumps(
        result.to_dict()
    )
    assert result.failure.failover_note  # the failure policy said what became of MHA
    failed = [e for e in logs if e["event"] == "hook.failed"]
    assert failed and failed[0]["exit_status"] == 4 and "hunter2" not in str(logs)
    assert [s.status for s in result.steps if s.host == "db3"] == [StepStatus.FAILED]
    assert result.failure.next_steps[0].startswith(
        "the before_node_restart hook failed (db3 was not restarted)"
    )


def test_a_timed_out_hook_says_so() -> None:
    world = FakeWorld.create(1)
    hooks = FakeHookRunner(world)
    hooks.fail[("before_node_restart", "db2")] = HookOutcome("hooks/drain.sh", None, 5.0, "", 5)
    result = execute(world, hooks)
    assert result.failure is not None
    assert "`hooks/drain.sh` timed out after 5 s (killed); no output" in result.failure.reason
    assert world.nodes["db2"].restarts == 0


def test_after_hook_failure_keeps_the_node_restarted_and_stops_after_its_step() -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world)
    hooks.fail[("after_node_restart", "db2")] = HookOutcome("hooks/ready.sh", 1, 0.1, "no\n", 60)
    result = execute(world, hooks)
    assert result.failure is not None and result.failure.step == "restart_replica:db2"
    assert "hook after_node_restart for db2 failed" in result.failure.reason
    assert world.nodes["db2"].restarts == 1
    assert world.nodes["db3"].restarts == 0 and world.nodes["db1"].restarts == 0
    assert "db2 was restarted and passed its checks" in result.failure.next_steps[0]


@pytest.mark.parametrize("point", ["before_node_restart", "after_node_restart"])
def test_resume_after_a_hook_failure_reruns_the_hook_and_restarts_nothing_twice(
    tmp_path: Path, point: str
) -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world)
    hooks.fail[(point, "db3")] = HookOutcome("hook", 1, 0.1, "no\n", 60)
    journal = Journal(
        path=journal_path(tmp_path, "1", "lab"), group="lab", account="1", inventory="inv.yml"
    )
    assert not execute(world, hooks, journal).ok
    restarted_before = world.nodes["db3"].restarts
    assert restarted_before == (1 if point == "after_node_restart" else 0)
    hooks.fail.clear()
    world.events.clear()
    world.clock.advance(30)
    resumed = Journal.load(journal.path)
    assert resumed is not None
    result = execute(world, hooks, resumed, resume=True)
    assert result.ok, result.failure
    assert world.nodes["db2"].restarts == 1  # finished before the failure: not again
    assert world.nodes["db3"].restarts == 1 and world.nodes["db1"].restarts == 1
    db3 = [k for k, h in order(world) if h == "db3"]
    if point == "before_node_restart":
        assert db3 == ["hook:before_node_restart", "restart", "hook:after_node_restart"]
    else:  # already restarted: the step's hooks run again, the restart is not sent again
        assert db3 == ["hook:before_node_restart", "hook:after_node_restart"]
    assert "db2" not in [h for _, h in order(world)]


def test_no_runner_fails_the_step_before_the_restart() -> None:
    world = FakeWorld.create(1)
    group = hooked_group(1)
    result = Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
    ).run()
    assert result.failure is not None and "no hook runner here" in result.failure.reason
    assert world.nodes["db2"].restarts == 0


def test_the_adapter_runs_a_real_script_through_the_executor(tmp_path: Path) -> None:
    """The real runner with the engine: env file per call, cwd = the inventory's directory."""
    (tmp_path / "hooks").mkdir()
    script = tmp_path / "hooks" / "log.sh"
    script.write_text(
        '#!/bin/sh\nenv | grep ^HARESTART_ | sort > "calls/$HARESTART_HOOK-$HARESTART_NODE"\n'
    )
    script.chmod(0o755)
    (tmp_path / "calls").mkdir()
    text = inventory("  hooks:\n    before_node_restart: hooks/log.sh\n", replicas=1)
    group = parse_inventory(text, "inv.yml", base_dir=tmp_path).groups[0]
    world = FakeWorld.create(1)
    result = Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        hooks=SubprocessHookRunner(),
    ).run()
    assert result.ok, result.failure
    assert sorted(p.name for p in (tmp_path / "calls").iterdir()) == [
        "before_node_restart-db1",
        "before_node_restart-db2",
    ]
    env = (tmp_path / "calls" / "before_node_restart-db2").read_text()
    assert "HARESTART_ROLE=replica\n" in env and "HARESTART_RUN_ID=-\n" in env


# --- the CLI, on the fakes with the real runner ---------------------------------------------

HOOK = """#!/bin/sh
echo "$HARESTART_HOOK $HARESTART_NODE" >> calls.log
if [ -e refuse-$HARESTART_NODE ]; then echo "proxy says no for $HARESTART_NODE" >&2; exit 9; fi
"""


def test_cli_reports_a_failed_hook_exits_1_and_resume_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    import structlog

    from harestart import cli
    from tests.unit.test_cli_run import Lab

    lab = Lab(tmp_path, ["a"])
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "h.sh").write_text(HOOK)
    (tmp_path / "hooks" / "h.sh").chmod(0o755)
    text = lab.inventory.read_text().replace(
        "defaults: {", "defaults: {hooks: {before_node_restart: hooks/h.sh}, ", 1
    )
    lab.inventory.write_text(text)
    (tmp_path / "refuse-a3").touch()
    env = dataclasses.replace(lab.env, hooks=SubprocessHookRunner())

    def harestart(*args: str) -> tuple[int | str | None, str, str]:
        with pytest.raises(SystemExit) as exit_:
            cli.main([args[0], str(lab.inventory), *args[1:]], env=env)
        out, err = capsys.readouterr()
        return exit_.value.code, out, err

    try:
        code, out, _ = harestart("run", "--yes")
        assert code == 1
        assert (
            "FAILED at restart_replica:a3 on a3: hook before_node_restart for a3 failed: "
            "`hooks/h.sh` exited 9 after" in out
        )
        assert "\n  | proxy says no for a3\n" in out
        assert "a3 was not restarted" in out
        assert lab.restarts("a") == [0, 1, 0]
        code, out, _ = harestart("plan")
        assert code == 0 and "do: hook before_node_restart: `hooks/h.sh` (timeout 60 s)" in out

        (tmp_path / "refuse-a3").unlink()
        lab.clock.advance(30)
        code, out, err = harestart("resume", "--yes")
        assert code == 0, out + err
        assert lab.restarts("a") == [1, 1, 1]
        calls = (tmp_path / "calls.log").read_text().split("\n")
        assert calls == [
            "before_node_restart a2",
            "before_node_restart a3",  # refused
            "before_node_restart a3",  # resume: run again, then the restart
            "before_node_restart a1",
            "",
        ]
    finally:
        structlog.reset_defaults()
