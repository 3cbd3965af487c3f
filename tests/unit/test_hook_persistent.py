"""The persistent hook mode (``hooks: {mode: persistent}``): the inventory and the plan, the
protocol's judgements (pure), the real pipe adapter, and the executor sending each event to one
real program per run (on the fakes' hosts): events in order, ok and error answers, a program
that dies, answers late or outside the protocol, its environment, and its end with the run."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from harestart.adapters.hooks import SubprocessHookRunner
from harestart.domain.group import Group, HookPoint
from harestart.domain.hook_protocol import (
    MAX_LINE_BYTES,
    Ending,
    Exchange,
    answer_outcome,
    hello,
    hello_outcome,
)
from harestart.domain.hooks import hook_event, hook_variables, node_hook
from harestart.domain.plan.build import build_plan
from harestart.domain.result import RunResult, StepStatus
from harestart.domain.secret import Secret
from harestart.domain.topology import MhaState
from harestart.engine.sequencer.executor import Executor
from harestart.engine.sequencer.waiting import poll_until
from harestart.errors import InventoryError
from harestart.inventory.load import parse_inventory
from harestart.views.plan import render_json, render_text
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.test_hooks import FakeHookRunner, alive, inventory

# A hook program for the tests. Arguments: --log FILE (each line received, as JSON lines; its
# pid to FILE.pids at start), --env FILE (its environment as JSON), --caps a,b (the
# capabilities it answers; default: what it was offered), and misbehaviour at the Nth event:
# --die-at N (stderr, exit 3), --silent-at N (never answers: it reads on), --garbage-at N,
# --two-lines-at N, --exit-after N (exit 0 once it answered), --refuse NODE (ok false, with a
# secret in its message and on stderr), --stubborn (ignores EOF and SIGTERM), --child FILE (a
# child in its process group, pid to FILE).
PROGRAM = r"""
import argparse, json, os, signal, subprocess, sys
ap = argparse.ArgumentParser()
for flag in ("--log", "--env", "--caps", "--refuse", "--child", "--secret"):
    ap.add_argument(flag)
for flag in ("--die-at", "--silent-at", "--garbage-at", "--two-lines-at", "--exit-after"):
    ap.add_argument(flag, type=int, default=0)
ap.add_argument("--stubborn", action="store_true")
a = ap.parse_args()
def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
def log(line):
    if a.log:
        with open(a.log, "a") as f: f.write(line)
if a.log:
    with open(a.log + ".pids", "a") as f: f.write(f"{os.getpid()}\n")
if a.env:
    with open(a.env, "w") as f: json.dump(dict(os.environ), f)
if a.child:
    child = subprocess.Popen(["sleep", "300"])
    with open(a.child, "w") as f: f.write(str(child.pid))
if a.stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
first = sys.stdin.readline()
log(first)
offered = json.loads(first)["capabilities"]
say({"harestart-hook": 1, "capabilities": a.caps.split(",") if a.caps else offered})
n = 0
for line in sys.stdin:
    n += 1
    log(line)
    event = json.loads(line)
    print(f"event {n}: {event['point']} {event['node']}", file=sys.stderr, flush=True)
    if n == a.die_at:
        print(f"crashing at event {n}", file=sys.stderr, flush=True)
        sys.exit(3)
    if n == a.silent_at:
        continue
    if n == a.garbage_at:
        print("moving the writer... done"); sys.stdout.flush(); continue
    if event["node"] == a.refuse:
        print(f"proxy refused; password was {a.secret}", file=sys.stderr, flush=True)
        message = f"{a.refuse} unknown to the proxy (pw {a.secret})"
        say({"id": event["id"], "ok": False, "message": message})
        continue
    say({"id": event["id"], "ok": True})
    if n == a.two_lines_at:
        say({"id": event["id"], "ok": True})
    if n == a.exit_after:
        sys.exit(0)
if a.stubborn:
    while True:
        signal.pause()
"""

NODES = ("db2", "db3", "db1")  # a restart run's order


def program(tmp_path: Path, *args: str, timeout: float = 10) -> str:
    """The hooks section of an inventory whose two node hooks name one persistent program."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    command = " ".join([sys.executable, "prog.py", *args])
    return (
        "  hooks:\n"
        "    mode: persistent\n"
        f"    before_node_restart: {{command: '{command}', timeout: {timeout}}}\n"
        f"    after_node_restart: {{command: '{command}', timeout: {timeout}}}\n"
    )


def group_of(tmp_path: Path, hooks: str) -> Group:
    return parse_inventory(inventory(hooks), "inv.yml", base_dir=tmp_path).groups[0]


RUNNER = SubprocessHookRunner(stop_grace=5, term_grace=1)


def execute(world: FakeWorld, group: Group, runner: Any = RUNNER) -> RunResult:
    return Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        wall=world.clock.now,
        hooks=runner,
    ).run()


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def pids(log: Path) -> list[int]:
    return [int(p) for p in Path(f"{log}.pids").read_text().split()]


def gone(pid: int) -> None:
    poll_until(lambda: not alive(pid) or None, what=f"the end of {pid}", timeout=30)


# --- the inventory and the plan ---------------------------------------------------------------


def test_mode_persistent_resolves_for_every_point_and_a_groups_mode_wins(tmp_path: Path) -> None:
    g = group_of(tmp_path, program(tmp_path))
    before, after = g.hooks.before_node_restart, g.hooks.after_node_restart
    assert before is not None and after is not None
    assert before.persistent and after.persistent and before.program == after.program
    assert g.hooks.points_of(before.program) == (
        HookPoint.BEFORE_NODE_RESTART,
        HookPoint.AFTER_NODE_RESTART,
    )
    own = "    hooks: {mode: event}\n"
    text = inventory(program(tmp_path), own)
    mine = parse_inventory(text, "inv.yml", base_dir=tmp_path).groups[0].hooks
    assert mine.before_node_restart is not None and not mine.before_node_restart.persistent


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ("  hooks: {mode: persistant, after_switch: x}\n", "'event' or 'persistent'"),
        ("  hooks: {mode: true, after_switch: x}\n", "mode"),
        ("  hooks: {env_passthrough: [HARESTART_HOOK_MODE]}\n", "harestart sets it"),
    ],
)
def test_a_bad_mode_or_passing_the_mode_variable_is_refused(hooks: str, message: str) -> None:
    with pytest.raises(InventoryError) as err:
        parse_inventory(inventory(hooks), "inv.yml")
    assert "inv.yml:4" in str(err.value) and message in str(err.value)


def test_plan_says_each_event_goes_to_the_persistent_program(tmp_path: Path) -> None:
    plan = build_plan(group_of(tmp_path, program(tmp_path, timeout=7)))
    text = render_text(plan, verbose=True)
    command = f"{sys.executable} prog.py"
    lines = [ln.strip() for ln in text.splitlines() if "hook " in ln]
    assert len(lines) == 6  # one line per event: before and after each of three nodes
    assert lines[0] == (
        f"do: hook before_node_restart: event sent to the persistent program `{command}` "
        "(answer within 7 s)"
    )
    step = json.loads(render_json([plan]))[0]["steps"][2]
    assert step["actions"][0]["mode"] == "persistent"
    assert step["actions"][0]["command"] == command


# --- the protocol (pure) ------------------------------------------------------------------------


def test_an_event_carries_the_facts_of_the_hook_variables(tmp_path: Path) -> None:
    g = group_of(tmp_path, program(tmp_path))
    act = node_hook(g, HookPoint.BEFORE_NODE_RESTART, "db2")
    assert act is not None
    event = hook_event(g, act, "run9")
    variables = hook_variables(g, act, "run9")
    assert list(event.values()) == list(variables.values())
    assert event == {
        "point": "before_node_restart", "account": "1", "group": "lab", "run_id": "run9",
        "node": "db2", "node_host": "10.0.0.2", "role": "replica", "old_source": "db1",
        "new_source": "db1", "strategy": "restart",
    }  # fmt: skip
    assert json.loads(hello([HookPoint.AFTER_SWITCH])) == {
        "harestart-hook": 1,
        "capabilities": ["after_switch"],
    }


@pytest.mark.parametrize(
    ("exchange", "ending", "text"),
    [
        (Exchange('{"id": 7, "ok": true, "later": 1}', 0.01), Ending.OK, "answered ok"),
        (Exchange('{"id": 7, "ok": false, "message": "no"}', 0.2), Ending.ERROR,
         "answered error after 0.2 s: no"),
        (Exchange('{"ok": false, "id": 7}', 0.2), Ending.ERROR, "error after 0.2 s: (no message)"),
        (Exchange('{"ok": true}', 0), Ending.MALFORMED, 'no "id" in the answer (this event\'s is 7)'),
        (Exchange('{"id": 6, "ok": true}', 0), Ending.MALFORMED, "an answer to event 6, not to 7"),
        (Exchange('{"id": true, "ok": true}', 0), Ending.MALFORMED, "an answer to event true"),
        (Exchange("moving the writer", 0), Ending.MALFORMED, "not JSON: 'moving the writer'"),
        (Exchange("[true]", 0), Ending.MALFORMED, "not a JSON object"),
        (Exchange('{"id": 7, "ok": "yes"}', 0), Ending.MALFORMED, 'expected {"id": 7, "ok": true}'),
        (Exchange('{"id": 7, "ok": false, "message": 3}', 0), Ending.MALFORMED, "expected"),
        (Exchange("[" * 100_000, 0), Ending.MALFORMED, "cut at 200 of 100000 characters"),
        (Exchange(None, 5.0, timed_out=True), Ending.TIMED_OUT,
         "did not answer this event within 5 s (the program was stopped)"),
        (Exchange(None, 0.1, exit_status=3), Ending.DIED, "exited 3 before answering"),
        (Exchange(None, 0.1, exit_status=-9), Ending.DIED, "was killed by signal 9"),
        (Exchange(None, 0, problem="an answer longer than 65536 bytes"), Ending.MALFORMED,
         "outside the protocol: an answer longer than 65536 bytes"),
    ],
)  # fmt: skip
def test_answers_are_judged(exchange: Exchange, ending: Ending, text: str) -> None:
    outcome = answer_outcome("prog", exchange, 5.0, 7)
    assert outcome.ending is ending and text in outcome.status_text()
    assert outcome.ok is (ending is Ending.OK)
    assert outcome.broken is (ending not in (Ending.OK, Ending.ERROR))


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"harestart-hook": 1, "capabilities": ["after_switch", "other"]}', None),
        ('{"harestart-hook": 2, "capabilities": ["after_switch"]}', 'its "harestart-hook" is 2'),
        ('{"harestart-hook": 1}', 'no "capabilities" list'),
        ('{"harestart-hook": 1, "capabilities": []}', "does not handle after_switch"),
        ("ready", "not JSON"),
    ],
)
def test_the_hello_agrees_on_the_version_and_the_points(answer: str, problem: str | None) -> None:
    outcome = hello_outcome("prog", Exchange(answer, 0.1), 5.0, [HookPoint.AFTER_SWITCH])
    if problem is None:
        assert outcome is None
    else:
        assert outcome is not None and problem in outcome.status_text()
        assert "answered its hello outside the protocol" in outcome.status_text()


# --- the adapter ----------------------------------------------------------------------------------


def test_adapter_exchanges_lines_keeps_stderr_per_exchange_and_refuses_a_long_line(
    tmp_path: Path,
) -> None:
    script = (
        "import sys\n"
        "for line in sys.stdin:\n"
        "    print('err for', line.strip(), file=sys.stderr, flush=True)\n"
        "    out = 'x' * 70000 if line.strip() == 'long' else 'echo ' + line.strip()\n"
        "    print(out, flush=True)\n"
    )
    (tmp_path / "echo.py").write_text(script)
    prog = RUNNER.start(f"{sys.executable} echo.py", cwd=str(tmp_path), env={})
    try:
        first = prog.exchange("one", timeout=10)
        assert (first.answer, first.output) == ("echo one", "err for one\n")
        second = prog.exchange("two", timeout=10)
        assert (second.answer, second.output) == ("echo two", "err for two\n")
        long = prog.exchange("long", timeout=10)
        assert (
            long.answer is None and long.problem == f"an answer longer than {MAX_LINE_BYTES} bytes"
        )
    finally:
        assert prog.stop() == "exited 0"
    assert prog.exchange("three", timeout=1).problem == "the program was stopped (exited 0)"


def test_adapter_stops_a_program_that_ignores_eof_and_sigterm(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    runner = SubprocessHookRunner(stop_grace=0.5, term_grace=0.5)
    child = tmp_path / "child.pid"
    prog = runner.start(
        f"exec {sys.executable} prog.py --stubborn --child {child}", cwd=str(tmp_path), env={}
    )
    answer = prog.exchange(hello([HookPoint.AFTER_SWITCH]), timeout=10).answer
    assert answer is not None and json.loads(answer)["harestart-hook"] == 1
    t0 = time.monotonic()
    assert prog.stop() == "killed"
    assert time.monotonic() - t0 < 20
    gone(int(child.read_text()))  # its process group went with it


# --- the executor with the real adapter --------------------------------------------------------


def test_one_program_gets_every_event_in_order_and_ends_with_the_run(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    world = FakeWorld.create(2)
    with capture_logs() as logs:
        result = execute(world, group_of(tmp_path, program(tmp_path, "--log", str(log))))
    assert result.ok, result.failure
    lines = received(log)
    assert lines[0] == {
        "harestart-hook": 1,
        "capabilities": ["before_node_restart", "after_node_restart"],
    }
    events = [(e["point"], e["node"]) for e in lines[1:]]
    assert events == [(p, n) for n in NODES for p in ("before_node_restart", "after_node_restart")]
    assert {e["run_id"] for e in lines[1:]} == {"-"}  # no journal in this run
    assert lines[-1]["role"] == "source" and lines[1]["role"] == "replica"
    (pid,) = pids(log)  # started once for the whole run ...
    gone(pid)  # ... and ended with it
    finished = [e for e in logs if e["event"] == "hook.finished"]
    assert len(finished) == 6
    assert {(e["mode"], e["answer"], e["exit_status"]) for e in finished} == {
        ("persistent", "ok", None)
    }
    ends = [e for e in logs if e["event"] == "hook.program_stopped"]
    assert [(e["why"], e["ended"]) for e in ends] == [("end of the run", "exited 0")]


def test_a_parallel_batch_queues_its_events_to_the_one_program(tmp_path: Path) -> None:
    import threading

    from harestart.domain.plan.model import PlanOptions

    log = tmp_path / "events.jsonl"
    text = inventory(program(tmp_path, "--log", str(log)), replicas=3)
    group = parse_inventory(text, "inv.yml", base_dir=tmp_path).groups[0]
    world = FakeWorld.create(3)
    # db2's and db3's restart commands must be in flight at the same moment, or this times out.
    world.restart_barrier = threading.Barrier(2, timeout=10)
    world.barrier_hosts = frozenset({"db2", "db3"})
    result = Executor(
        group,
        build_plan(group, PlanOptions(replica_parallelism=2)),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        hooks=RUNNER,
    ).run()
    assert result.ok, result.failure
    events = [(e["point"], e["node"]) for e in received(log)[1:]]  # each line whole JSON
    assert sorted(events) == sorted(
        (p, n) for n in ("db2", "db3", "db4", "db1")
        for p in ("before_node_restart", "after_node_restart")
    )  # fmt: skip
    for node in ("db2", "db3"):  # the batch's: each node's before ahead of its after
        assert events.index(("before_node_restart", node)) < events.index(
            ("after_node_restart", node)
        )
    assert events[-2:] == [("before_node_restart", "db1"), ("after_node_restart", "db1")]
    assert len(pids(log)) == 1


def test_an_error_answer_fails_the_event_with_the_message_scrubbed(tmp_path: Path) -> None:
    Secret("hunter2-proxy-pw")  # a secret harestart knows, which the program echoes
    log = tmp_path / "events.jsonl"
    args = ("--log", str(log), "--refuse", "db3", "--secret", "hunter2-proxy-pw")
    world = FakeWorld.create(2)
    with capture_logs() as logs:
        result = execute(world, group_of(tmp_path, program(tmp_path, *args)))
    assert result.failure is not None and result.failure.step == "restart_replica:db3"
    reason = result.failure.reason
    assert reason.startswith(
        "hook before_node_restart for db3 failed: the persistent program "
        f"`{sys.executable} prog.py --log {log}"
    )
    assert re.search(
        r"answered error after \d+\.\d s: db3 unknown to the proxy \(pw \*\*\*\)", reason
    )
    assert "stderr (its last 4096 bytes at most):\n  | event 3: before_node_restart db3\n" in reason
    assert "  | proxy refused; password was ***" in reason
    assert "hunter2" not in json.dumps(result.to_dict()) + str(logs)
    assert world.nodes["db3"].restarts == 0 and world.nodes["db1"].restarts == 0
    assert result.failure.next_steps[0].startswith(
        "the before_node_restart hook failed (db3 was not restarted)"
    )
    (pid,) = pids(log)
    gone(pid)  # an error answer is an answer: the program ends with the run, as usual


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("--die-at", "2"), "exited 3 before answering this event"),
        (("--silent-at", "2"), "did not answer this event within 3 s (the program was stopped)"),
        (("--garbage-at", "2"), "answered this event outside the protocol: not JSON: 'moving the"),
    ],
    ids=["dies", "late", "malformed"],
)
def test_a_program_that_dies_answers_late_or_malformed_fails_its_event(
    tmp_path: Path, args: tuple[str, ...], status: str
) -> None:
    log = tmp_path / "events.jsonl"
    world = FakeWorld.create(2)
    t0 = time.monotonic()
    with capture_logs() as logs:
        result = execute(world, group_of(tmp_path, program(tmp_path, "--log", str(log), *args,
                                                           timeout=3)))  # fmt: skip
    assert time.monotonic() - t0 < 30
    assert result.failure is not None and result.failure.step == "restart_replica:db2"
    reason = result.failure.reason
    assert reason.startswith("hook after_node_restart for db2 failed: the persistent program")
    assert status in reason
    assert "  | event 2: after_node_restart db2" in reason  # its stderr since its last answer
    if "--die-at" in args:
        assert "  | crashing at event 2" in reason
    assert world.nodes["db2"].restarts == 1 and world.nodes["db3"].restarts == 0
    assert [s.status for s in result.steps if s.host == "db2"] == [StepStatus.FAILED]
    assert result.failure.failover_note  # the failure policy said what became of MHA
    (pid,) = pids(log)
    gone(pid)
    stopped = [e for e in logs if e["event"] == "hook.program_stopped"]
    assert len(stopped) == 1 and stopped[0]["why"] in ("died", "timed_out", "malformed")
    failed = [e for e in logs if e["event"] == "hook.failed"]
    assert failed[0]["timed_out"] is ("--silent-at" in args)


def test_a_program_that_exits_between_events_fails_the_next_one(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    world = FakeWorld.create(2)
    result = execute(world, group_of(tmp_path, program(tmp_path, "--log", str(log),
                                                       "--exit-after", "1")))  # fmt: skip
    assert result.failure is not None
    assert "hook after_node_restart for db2 failed" in result.failure.reason
    assert "exited 0 before answering this event" in result.failure.reason
    assert len(pids(log)) == 1  # not started again within the run


def test_a_second_answer_line_fails_the_next_event(tmp_path: Path) -> None:
    """Never taken for the next event's answer: seen waiting before the next event is sent,
    or read as its answer and refused by its id (which of the two: the pipes' timing)."""
    world = FakeWorld.create(2)
    result = execute(world, group_of(tmp_path, program(tmp_path, "--two-lines-at", "1")))
    assert result.failure is not None and result.failure.step == "restart_replica:db2"
    reason = result.failure.reason
    assert reason.startswith("hook after_node_restart for db2 failed: the persistent program")
    assert (
        "answered this event outside the protocol: it wrote more than one line for the "
        "previous exchange"
        in reason
        or "answered this event outside the protocol: an answer to event 1, not to 2" in reason
    ), reason


def test_a_hello_without_a_point_it_will_get_fails_the_first_event(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    world = FakeWorld.create(2)
    hooks = program(tmp_path, "--log", str(log), "--caps", "before_node_restart")
    result = execute(world, group_of(tmp_path, hooks))
    assert result.failure is not None and result.failure.step == "restart_replica:db2"
    assert (
        "answered its hello outside the protocol: it does not handle after_node_restart "
        "(its capabilities: before_node_restart)" in result.failure.reason
    )
    assert world.nodes["db2"].restarts == 0  # before anything of the node changed
    assert len(received(log)) == 1  # the hello, and no event


def test_the_program_sees_the_allow_list_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "HARESTART_MYSQL_PASSWORD": "mysql-secret-8c1f",
        "HARESTART_TOKENS": "tok-2a7e: '1'",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-3f9a",
    }
    allowed = {"LANG": "C.UTF-8", "TZ": "UTC", "PROXY_API": "10.0.0.9:9999"}
    for name, value in {**secrets, **allowed}.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "env.json"
    hooks = program(tmp_path, "--env", str(dump)) + "    env_passthrough: [PROXY_API]\n"
    result = execute(FakeWorld.create(2), group_of(tmp_path, hooks))
    assert result.ok, result.failure
    env = json.loads(dump.read_text())
    raw = dump.read_text()
    assert not [n for n, v in secrets.items() if n in env or v in raw]
    assert {k: env.get(k) for k in allowed} == allowed
    assert env["PATH"] == os.environ["PATH"]
    assert {k for k in env if k.startswith("HARESTART_")} == {"HARESTART_HOOK_MODE"}
    assert env["HARESTART_HOOK_MODE"] == "persistent"
    inherited = {"PATH", "HOME", *allowed} | {k for k in env if k.startswith("LC_")}
    assert set(env) - inherited - {"HARESTART_HOOK_MODE"} <= {"PWD", "SHLVL", "_"}


def test_a_program_that_cannot_start_fails_the_step(tmp_path: Path) -> None:
    hooks = program(tmp_path)
    group = parse_inventory(inventory(hooks), "inv.yml", base_dir=tmp_path / "nope").groups[0]
    result = execute(FakeWorld.create(2), group)
    assert result.failure is not None and "bastion: start hook" in result.failure.reason


# --- a switchover, on the fakes' program ---------------------------------------------------------


def test_a_switchover_sends_every_point_to_one_program_in_order() -> None:
    from tests.unit.test_switchover import run, source_world, switch_group

    hooks = (
        "hooks: {mode: persistent, before_node_restart: h, after_node_restart: h, "
        "before_switch: h, after_switch: h}, "
    )
    world = source_world()
    runner = FakeHookRunner(world)
    result = run(world, group=switch_group(defaults=hooks), hooks=runner)
    assert result.ok, result.failure
    (prog,) = runner.programs
    assert prog.lines[0]["capabilities"] == [p.value for p in HookPoint]
    seen = [(e["point"], e["node"], e["old_source"], e["new_source"]) for e in prog.lines[1:]]
    assert seen == [
        ("before_node_restart", "db2", "db1", "db1"),
        ("after_node_restart", "db2", "db1", "db1"),
        ("before_node_restart", "db3", "db1", "db1"),
        ("after_node_restart", "db3", "db1", "db1"),
        ("before_switch", "db1", "db1", "db3"),
        ("after_switch", "db1", "db1", "db3"),
        ("before_node_restart", "db1", "db3", "db3"),
        ("after_node_restart", "db1", "db3", "db3"),
        ("before_switch", "db3", "db3", "db1"),
        ("after_switch", "db3", "db3", "db1"),
    ]
    assert prog.stopped == "exited 0"  # politely, at the end of the run
    assert runner.calls == []  # no per-event process
    assert prog.env["HARESTART_HOOK_MODE"] == "persistent"
    kinds = [(k, h) for k, h, _ in world.events]
    # before_switch before the source turns read-only; after_switch as soon as the candidate
    # left replication (the promotion), before the others are re-pointed to it
    assert kinds.index(("hook:before_switch", "db1")) < kinds.index(("set_read_only", "db1:1"))
    assert kinds.index(("reset_replica", "db3")) < kinds.index(("hook:after_switch", "db1"))
    after_switch = kinds.index(("hook:after_switch", "db1"))
    repointed = [h for k, h in kinds[after_switch:] if k == "start_replica"]
    assert {"db1", "db2"} <= set(repointed[:2]), kinds[after_switch:]
    assert kinds.index(("hook:before_node_restart", "db2")) < kinds.index(("restart", "db2"))
    assert kinds.index(("restart", "db2")) < kinds.index(("hook:after_node_restart", "db2"))


def test_a_failed_after_switch_answer_is_reported_like_a_failed_hook() -> None:
    from tests.unit.test_switchover import run, source_world, switch_group

    world = source_world()
    runner = FakeHookRunner(world)
    runner.answers[("after_switch", "db1")] = {"ok": False, "message": "writer/db3 is DOWN"}
    group = switch_group(defaults="hooks: {mode: persistent, after_switch: h}, ")
    result = run(world, group=group, hooks=runner)
    assert result.failure is not None
    assert "hook after_switch for db1 failed" in result.failure.reason
    assert "answered error after 0.0 s: writer/db3 is DOWN" in result.failure.reason  # fake time
    assert "  | event handled" in result.failure.reason
    # Right after the promotion: db3 writable, nothing re-pointed yet, so MHA stays stopped.
    assert result.failure.next_steps[0].startswith(
        "the after_switch hook failed (db3 is the writable source; the other nodes were not "
        "re-pointed to it yet)"
    )
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db3"]
    assert {world.nodes[r].source_id for r in ("db1", "db2")} == {1}
    assert world.mha_state is MhaState.NOT_RUNNING
