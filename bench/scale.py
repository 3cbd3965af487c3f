"""`make bench-scale`: what harestart itself costs per group, on simulated fleets of any size.

    python -m bench.scale [--groups 100,1000,10000] [--parallel 1,50,500] [--full]
                          [--json PATH] [--env-hook MODULE:FUNCTION] [--state-base DIR]
                          [--no-plan | --plans-only] [--plan-repeat N] [--no-profile]
                          [--etcd | --coordination URL]

No Docker and no hosts: every group is the unit tests' fakes (``tests/unit/fakes.py``: one
FakeWorld per group, restarts that take no time, MHA that answers at once), so what is
measured is harestart's own code: the real inventory loader, planner, preflight, engine,
journal, lock and run log, through the real CLI (``harestart run --all --yes
--parallel-groups P --format json``, output thrown away) with an injected ``Environment``.

For each fleet size N and each --parallel-groups P (by default 10,000 groups only at 500:
the full matrix takes over half an hour on 2 cores; --full runs it), in a fresh process (so
the peak memory is that run's): wall time, CPU time per group (``time.process_time``: every
thread, the fakes included, so an upper bound; and how much of it the kernel spent, mostly
on the journal's atomic file replacements), peak RSS, and RSS and Python's allocated memory
blocks after the first 10% of the groups finished and after all of them (what a finished
group leaves behind: its RunResult, kept for the final report, and nothing else should
grow). Then ``harestart plan`` of each N in a fresh process: wall, CPU and peak RSS (the
median of ``--plan-repeat`` runs, each with the load average beside it), and, for the largest
N, where its time and memory go: a cProfile of the same command (the top entries by own time
and by cumulative time in harestart's code) and tracemalloc's peak with the allocation sites
still alive once the inventory is loaded (what the whole command carries); ``--no-profile``
skips it.

Results: a table on stdout and JSON (default build/bench-scale.json). Nothing is asserted
but that every group ended ACTIVE; tests never assert timings.

The group locks are the local default (an flock in the state directory), or with
``--coordination URL`` those of a shared service (the inventory gets ``defaults.coordination``);
``--etcd`` starts one etcd member for the measurement (a container of the lab image, Debian's
etcd-server, published on 127.0.0.1 only; removed afterwards).

Any other change to the Environment is measured by
passing ``--env-hook module:function``: the function receives the fakes' Environment and
returns the one to use (e.g. ``dataclasses.replace(env, <backend field>=...)``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import datetime as dt
import gc
import importlib
import json
import math
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from harestart import cli, wiring
from harestart.adapters.coordination_session import Session
from harestart.adapters.coordination_session import sessions as coordination_sessions
from harestart.adapters.protocols import Connector, FailoverManager
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.engine.coordination import local_coordination
from harestart.engine.run import Environment
from harestart.engine.sequencer.waiting import ManualClock, poll_until
from harestart.inventory.load import load_inventory
from tests.unit.fakes import FakeCommands, FakeMha, FakeNode, FakeProbe, FakeShell, FakeWorld

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "HARESTART_BENCH_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_GROUPS = (100, 1_000, 10_000)
DEFAULT_PARALLEL = (1, 50, 500)
# 10,000 groups one at a time or 50 at a time takes 6-10 minutes each on 2 cores (the journal's
# twenty atomic file replacements per group dominate): by default 10,000 runs at 500 only,
# the others with --full.
SKIPPED_BY_DEFAULT = frozenset({(10_000, 1), (10_000, 50)})
TARGET_CPU_MS_PER_GROUP = 10.0  # the local lock
TARGET_CPU_MS_PER_GROUP_SHARED = 20.0  # the locks on a coordination service (etcd)

EnvHook = Callable[[Environment], Environment]
# The shared lock service of the measured runs (set by --coordination or --etcd for the
# children): the fleet's inventory gets ``defaults.coordination`` with this URL.
COORDINATION_ENV = "HARESTART_BENCH_COORDINATION"
ETCD_IMAGE = "harestart-lab:mariadb"  # Debian's etcd-server, as in the integration tests


# --- the simulated fleet ---------------------------------------------------------------------


def fleet_inventory(groups: int, coordination: str | None = None) -> str:
    """A plain inventory (no anchors or aliases) of ``groups`` groups: source, 2 replicas, MHA;
    with ``coordination`` (a URL), their locks on that shared service."""
    lines = [
        "defaults:",
        "  ssh: {user: ops, sudo: true}",
        f"  mysql: {{user: harestart, password_env: {PASSWORD_ENV}}}",
    ]
    if coordination:
        lines.append(f"  coordination: {{url: '{coordination}', lease: 30}}")
    lines.append("groups:")
    for i in range(groups):
        net = f"{10 + i // 62500}.{i // 250 % 250}.{i % 250}"
        lines += [
            f"  - id: g{i:05d}",
            f"    account: '{100000 + i % 50}'",
            f"    source: {{name: g{i}-db1, address: {net}.1}}",
            "    replicas:",
            f"      - {{name: g{i}-db2, address: {net}.2}}",
            f"      - {{name: g{i}-db3, address: {net}.3}}",
            f"    mha: {{manager: {{name: g{i}-mha, address: {net}.9}}, config: /etc/mha/app.cnf}}",
        ]
    return "\n".join(lines) + "\n"


class _NoEvents(list[tuple[str, str, float]]):
    """The fakes' event log, not kept: it is the simulation's memory, not harestart's."""

    def append(self, item: tuple[str, str, float]) -> None:
        pass


def _world(prefix: str, clock: ManualClock) -> FakeWorld:
    nodes = {f"{prefix}-db1": FakeNode(f"{prefix}-db1", 1, "source")}
    for i in (2, 3):
        nodes[f"{prefix}-db{i}"] = FakeNode(f"{prefix}-db{i}", i, "replica", read_only=True)
    return FakeWorld(clock=clock, nodes=nodes, restart_downtime=0.0, events=_NoEvents())


class _Connector:
    """One session's connector: each host name routes to its group's world (a dict lookup)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        return FakeShell(self.fleet.routes[name], name)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        return FakeProbe(self.fleet.routes[name], name)

    def commands(self, name: str, endpoint: MysqlEndpoint) -> FakeCommands:
        return FakeCommands(self.fleet.routes[name], name)

    def close_all(self) -> None:
        self.fleet.session_closed()


@dataclasses.dataclass
class Fleet:
    """N groups on fakes, their inventory file and state directory, and the Environment.

    ``sessions`` counts closed sessions: the first N are preflight's looks, one per group,
    then one per group restart; ``on_run_sessions`` is told how many restarts have ended.
    """

    groups: int
    tmp: Path
    clock: ManualClock = dataclasses.field(default_factory=lambda: ManualClock(1000.0))
    worlds: dict[str, FakeWorld] = dataclasses.field(default_factory=dict)
    routes: dict[str, FakeWorld] = dataclasses.field(default_factory=dict)
    sessions: int = 0
    on_run_sessions: Callable[[int], None] = lambda ended: None
    run_started: float | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for i in range(self.groups):
            world = _world(f"g{i}", self.clock)
            self.worlds[f"g{i:05d}"] = world
            self.routes.update(dict.fromkeys(world.nodes, world))
            self.routes[f"g{i}-mha"] = world
        self.inventory = self.tmp / "fleet.yml"
        self.coordination = os.environ.get(COORDINATION_ENV) or None
        self.inventory.write_text(fleet_inventory(self.groups, self.coordination))
        self.state = self.tmp / "state"

    def connector(self) -> Connector:
        with self._lock:
            if self.sessions == self.groups and self.run_started is None:
                self.run_started = time.perf_counter()  # preflight's looks are all done
        return _Connector(self)

    def failover_manager(self, group: Group, connector: Connector) -> FailoverManager:
        world = self.worlds[group.id]
        return FakeMha(world, FakeShell(world, group.mha.manager.name))

    def session_closed(self) -> None:
        with self._lock:
            self.sessions += 1
            ended = self.sessions - self.groups
            if ended > 0:
                self.on_run_sessions(ended)

    def environment(self) -> Environment:
        return Environment(
            connector=self.connector,
            failover_manager=self.failover_manager,
            state_dir=self.state,
            clock=self.clock,
            wall=self.clock.now,
            coordination=wiring.coordination if self.coordination else local_coordination,
        )


# --- measuring one run -----------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb(usage: resource.struct_rusage) -> float:
    return usage.ru_maxrss / (1e6 if sys.platform == "darwin" else 1e3)


@dataclasses.dataclass
class Sample:
    ended: int
    rss_mb: float
    blocks: int  # sys.getallocatedblocks(): Python objects and buffers alive


def measure_run(
    groups: int, parallel: int, *, hook: EnvHook | None = None, base: Path | None = None
) -> dict[str, Any]:
    """``harestart run --all`` of a simulated fleet of ``groups`` groups, in this process.

    The state directory (journals, locks, run log) is made under ``base`` (default: the
    system's temporary directory; its file system's cost is part of what is measured).
    """
    os.environ.setdefault(PASSWORD_ENV, "bench-password")
    with tempfile.TemporaryDirectory(prefix="harestart-scale-", dir=base) as tmp:
        fleet = Fleet(groups, Path(tmp))
        env = fleet.environment()
        if hook is not None:
            env = hook(env)
        samples: list[Sample] = []
        sampling = [0.0]  # CPU seconds spent sampling, left out of harestart's
        marks = {max(1, math.ceil(groups / 10)), groups}

        watch = SessionWatch()

        def sample(ended: int) -> None:
            watch.look()
            if ended in marks:
                c0 = time.process_time()
                # not gc.get_objects(): it hands out objects other threads are still building
                # (CPython then fails with "SystemError: bad argument to internal function")
                samples.append(Sample(ended, rss_mb(), sys.getallocatedblocks()))
                sampling[0] += time.process_time() - c0

        fleet.on_run_sessions = sample
        gc.collect()
        baseline = rss_mb()
        argv = ["run", str(fleet.inventory), "--all", "--yes", "--format", "json"]
        argv += ["--parallel-groups", str(parallel)]
        c0, t0, times0 = time.process_time(), time.perf_counter(), os.times()
        code = _run_cli(argv, env)
        cpu = time.process_time() - c0 - sampling[0]
        times1 = os.times()
        wall = time.perf_counter() - t0
        run_wall = t0 + wall - (fleet.run_started or t0)
        journals = sum(1 for _ in (fleet.state).rglob("*.json"))
    restarts = sum(n.restarts for w in fleet.worlds.values() for n in w.nodes.values())
    if not samples:  # no group ended (the run failed early): nothing to compare
        samples.append(Sample(0, rss_mb(), sys.getallocatedblocks()))
    first, last = samples[0], samples[-1]
    finished = max(1, last.ended - first.ended)
    return {
        "groups": groups,
        "parallel": parallel,
        "exit_code": code,
        "restarts": restarts,
        "journals": journals,
        "simulated_waits": len(fleet.clock.sleeps),
        "wall_s": wall,
        "preflight_wall_s": wall - run_wall,
        "run_wall_s": run_wall,
        "cpu_s": cpu,
        "cpu_ms_per_group": 1000 * cpu / groups,
        # of which in the kernel (journal and lock files: open, write, rename, fsync)
        "sys_ms_per_group": 1000 * (times1.system - times0.system) / groups,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF)),
        "rss_mb_after_10pct": first.rss_mb,
        "rss_mb_after_all": last.rss_mb,
        "blocks_after_10pct": first.blocks,
        "blocks_after_all": last.blocks,
        "kb_per_finished_group": 1000 * (last.rss_mb - first.rss_mb) / finished,
        "blocks_per_finished_group": (last.blocks - first.blocks) / finished,
        **watch.report(run_wall),
    }


class SessionWatch:
    """What keeps the coordination sessions during a run, looked at as groups end: how many
    sessions and threads at most, and the heartbeat passes they made (each one renews every
    group the session holds)."""

    def __init__(self) -> None:
        self.seen: dict[int, Session] = {}
        self.max_sessions = 0
        self.max_threads = 0
        self.max_held = 0

    def look(self) -> None:
        open_now = coordination_sessions()
        for s in open_now:
            self.seen[id(s)] = s
        self.max_sessions = max(self.max_sessions, len(open_now))
        self.max_threads = max(self.max_threads, threading.active_count())
        self.max_held = max(self.max_held, sum(len(s.holds) for s in open_now))

    def report(self, run_wall: float) -> dict[str, Any]:
        passes = sum(s.passes for s in self.seen.values())
        return {
            "coordination_sessions_max": self.max_sessions,
            "groups_held_max": self.max_held,
            "threads_max": self.max_threads,
            "heartbeat_passes": passes,
            "heartbeat_passes_per_s": passes / run_wall if run_wall > 0 else 0.0,
        }


def _run_cli(argv: list[str], env: Environment) -> int:
    """The real CLI in this process, its output thrown away; the exit code."""
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        contextlib.redirect_stderr(devnull),
    ):
        try:
            cli.main(argv, env=env)
        except SystemExit as exit_:
            code = exit_.code
        finally:
            structlog.reset_defaults()  # the CLI configured logging to the run's log file
    return code if isinstance(code, int) else 1


# --- harestart plan in a fresh process -------------------------------------------------------

PLAN_PROFILE_TOP = 15  # entries of the profile shown in the report


def measure_plan(groups: int, repeat: int = 1) -> dict[str, Any]:
    """``python -m harestart plan --format json`` of an N-group inventory, ``repeat`` times in
    fresh processes: each run's wall, CPU, peak RSS and the load average before it; the
    headline figures are the runs' medians."""
    with tempfile.TemporaryDirectory(prefix="harestart-scale-") as tmp:
        inventory = Path(tmp) / "fleet.yml"
        inventory.write_text(fleet_inventory(groups))
        runs = [_plan_once(inventory) for _ in range(max(1, repeat))]
    failed = [r for r in runs if r["exit_code"] != 0]
    chosen = failed[0] if failed else sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    cpu = chosen["cpu_s"]
    return {
        "groups": groups,
        "exit_code": chosen["exit_code"],
        "stderr": chosen["stderr"],
        "wall_s": chosen["wall_s"],
        "cpu_s": cpu,
        "cpu_ms_per_group": 1000 * cpu / groups,
        "peak_rss_mb": chosen["peak_rss_mb"],
        "load_avg": chosen["load_avg"],
        "runs": runs,
    }


def _plan_once(inventory: Path) -> dict[str, Any]:
    load = os.getloadavg()
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harestart", "plan", str(inventory), "--format", "json"],
            stdout=devnull,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "stderr": err.decode(errors="replace")[-2000:],
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak_rss_mb(usage),
        "load_avg": [round(x, 2) for x in load],
    }


def profile_plan(groups: int) -> dict[str, Any]:
    """Where ``plan --format json`` of N groups spends its time and memory, in a fresh process
    (``--profile-plan N``): its JSON on the last line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--profile-plan", str(groups)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:
        return {"groups": groups, "failed": done.stderr[-3000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _profile_plan_here(groups: int) -> dict[str, Any]:
    """The ``--profile-plan`` child: the real CLI under cProfile, then again under tracemalloc
    (a snapshot once the inventory is loaded: what the whole command carries)."""
    with tempfile.TemporaryDirectory(prefix="harestart-scale-") as tmp:
        inventory = Path(tmp) / "fleet.yml"
        inventory.write_text(fleet_inventory(groups))
        argv = ["plan", str(inventory), "--format", "json"]
        load = os.getloadavg()
        profiler = cProfile.Profile()
        profiler.enable()
        code = _run_quiet(argv)
        profiler.disable()
        stats = pstats.Stats(profiler)
        memory = _traced(argv)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats' own table

    def entry(key: Any) -> dict[str, Any]:
        calls, _, own, cum, _ = table[key]
        path, line, name = key
        where = f"{_short_path(path)}:{line}({name})" if line else name
        return {"function": where, "calls": calls, "own_s": own, "cum_s": cum}

    by_own = sorted(table, key=lambda k: table[k][2], reverse=True)
    ours = [k for k in table if "/harestart/" in k[0]]
    by_cum = sorted(ours, key=lambda k: table[k][3], reverse=True)
    return {
        "groups": groups,
        "exit_code": code,
        "load_avg": [round(x, 2) for x in load],
        "profiled_s": sum(v[2] for v in table.values()),
        "top_own_time": [entry(k) for k in by_own[:PLAN_PROFILE_TOP]],
        "top_cumulative_harestart": [entry(k) for k in by_cum[:PLAN_PROFILE_TOP]],
        **memory,
    }


def _traced(argv: list[str]) -> dict[str, Any]:
    """tracemalloc's peak over the command, and the sites alive once its inventory is loaded
    (the same loader, called alone: what the whole command carries)."""
    tracemalloc.start()
    try:
        inventory = load_inventory(argv[1])
        snapshot = tracemalloc.take_snapshot()
        del inventory
        tracemalloc.reset_peak()
        _run_quiet(argv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "traced_peak_mb": peak / 1e6,
        "alive_after_load_mb": sum(s.size for s in snapshot.statistics("filename")) / 1e6,
        "top_alive_after_load": [
            {
                "site": f"{_short_path(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "mb": s.size / 1e6,
                "blocks": s.count,
            }
            for s in snapshot.statistics("lineno")[:PLAN_PROFILE_TOP]
        ],
    }


def _short_path(path: str) -> str:
    for marker in ("/harestart/", "/site-packages/", "/lib/python"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path


def _run_quiet(argv: list[str]) -> int:
    """The real CLI in this process (no injected Environment), its output thrown away."""
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        contextlib.redirect_stderr(devnull),
    ):
        try:
            cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code if isinstance(code, int) else 1


# --- the matrix, each run in its own process ------------------------------------------------


def _child(groups: int, parallel: int, hook: str | None, base: Path | None) -> dict[str, Any]:
    """One run in a fresh interpreter (its own peak memory); its JSON on the last line."""
    cmd = [sys.executable, "-m", "bench.scale", "--one", str(groups), str(parallel)]
    if hook:
        cmd += ["--env-hook", hook]
    if base:
        cmd += ["--state-base", str(base)]
    done = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:  # reported in the table and the JSON; the other runs go on
        print(done.stderr[-3000:], file=sys.stderr)
        return {"groups": groups, "parallel": parallel, "failed": done.stderr[-3000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg"] = [round(x, 2) for x in os.getloadavg()]  # as the run ended
    return result


def load_hook(spec: str | None) -> EnvHook | None:
    if not spec:
        return None
    module, _, name = spec.partition(":")
    hook: EnvHook = getattr(importlib.import_module(module), name)
    return hook


def _sizes(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench-scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=_sizes, help="e.g. 100,1000 (default 100,1000,10000)")
    ap.add_argument("--parallel", type=_sizes, help="e.g. 1,50 (default 1,50,500)")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "bench-scale.json")
    ap.add_argument("--env-hook", metavar="MODULE:FUNCTION", help="Environment -> Environment")
    ap.add_argument("--no-plan", action="store_true", help="skip `harestart plan` per size")
    ap.add_argument("--plans-only", action="store_true", help="only `harestart plan` per size")
    ap.add_argument("--full", action="store_true", help="every size at every parallelism")
    ap.add_argument("--state-base", type=Path, help="where the state directories go (a disk)")
    ap.add_argument("--coordination", metavar="URL", help="locks on this service (e.g. etcd)")
    ap.add_argument("--etcd", action="store_true", help="start a local etcd for the locks")
    ap.add_argument("--plan-repeat", type=int, default=3, metavar="N", help="plan runs per size")
    ap.add_argument("--no-profile", action="store_true", help="skip profiling the largest plan")
    ap.add_argument("--one", nargs=2, type=int, metavar=("N", "P"), help=argparse.SUPPRESS)
    ap.add_argument("--profile-plan", type=int, metavar="N", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile_plan:
        print(json.dumps(_profile_plan_here(args.profile_plan)))
        return 0
    if args.one:
        run = measure_run(*args.one, hook=load_hook(args.env_hook), base=args.state_base)
        print(json.dumps(run))
        return 0
    if args.etcd:
        with local_etcd() as url:
            os.environ[COORDINATION_ENV] = url
            return _measure_all(args)
    if args.coordination:
        os.environ[COORDINATION_ENV] = args.coordination
    return _measure_all(args)


def _measure_all(args: argparse.Namespace) -> int:
    chosen = args.full or args.groups is not None or args.parallel is not None
    skip = frozenset() if chosen else SKIPPED_BY_DEFAULT
    args.groups = args.groups or list(DEFAULT_GROUPS)
    args.parallel = args.parallel or list(DEFAULT_PARALLEL)

    report: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()})",
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "env_hook": args.env_hook,
        "coordination": os.environ.get(COORDINATION_ENV) or "local (flock in the state dir)",
        "target_cpu_ms_per_group": (
            TARGET_CPU_MS_PER_GROUP_SHARED
            if os.environ.get(COORDINATION_ENV)
            else TARGET_CPU_MS_PER_GROUP
        ),
        "runs": [],
        "plans": [],
        "plan_profile": None,
    }
    for n, p in [] if args.plans_only else _matrix(args.groups, args.parallel, skip):
        print(f"run --all: {n} groups, --parallel-groups {p} ...", flush=True)
        before = etcd_requests(report["coordination"])
        run = _child(n, p, args.env_hook, args.state_base)
        run.update(etcd_traffic(before, etcd_requests(report["coordination"]), run))
        report["runs"].append(run)
        _write(args.json, report)  # what is measured so far survives a later failure
    if not args.no_plan:
        for n in args.groups:
            print(f"plan: {n} groups ...", flush=True)
            report["plans"].append(measure_plan(n, args.plan_repeat))
        if not args.no_profile:
            print(f"plan: {max(args.groups)} groups, profiled ...", flush=True)
            report["plan_profile"] = profile_plan(max(args.groups))
    print_report(report)
    _write(args.json, report)
    print(f"\nJSON: {args.json}")
    bad = [r for r in report["runs"] if r.get("exit_code") != 0 or r["restarts"] != 3 * r["groups"]]
    bad += [p for p in report["plans"] if p["exit_code"] != 0]
    return 1 if bad else 0


@contextlib.contextmanager
def local_etcd() -> Iterator[str]:
    """One etcd member in a container of the lab image, its client port published on
    127.0.0.1 only; removed afterwards. Yields its ``etcd3+http://`` URL once it answers."""
    name = f"harestart-bench-etcd-{os.getpid()}"
    run = ["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::2379"]
    run += ["--label", "harestart.lab=bench", "--entrypoint", "/usr/bin/tini"]
    run += [ETCD_IMAGE, "--", "etcd", "--name=bench"]
    run += ["--data-dir=/tmp/etcd", "--listen-client-urls=http://0.0.0.0:2379"]
    run += ["--advertise-client-urls=http://127.0.0.1:2379", "--log-level=error"]
    subprocess.run(run, check=True, capture_output=True, text=True)
    try:
        port = (
            subprocess.run(
                ["docker", "port", name, "2379/tcp"], check=True, capture_output=True, text=True
            )
            .stdout.split(":")[-1]
            .strip()
        )
        url = f"http://127.0.0.1:{port}/health"
        poll_until(lambda: _answers(url) or None, timeout=60.0, interval=0.2, what="etcd answers")
        yield f"etcd3+http://127.0.0.1:{port}"
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def etcd_requests(coordination: str) -> dict[str, float] | None:
    """etcd's own count of the requests it handled, per method (its /metrics: gRPC's
    ``grpc_server_started_total``, which the JSON gateway's requests go through too); None
    when the locks are not on etcd."""
    if not coordination.startswith("etcd3+"):
        return None
    parts = urllib.parse.urlsplit(coordination)
    scheme = "https" if parts.scheme.endswith("https") else "http"
    url = f"{scheme}://{parts.hostname}:{parts.port or 2379}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the bench's own etcd
            text = r.read().decode()
    except OSError:
        return None
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_started_total{"):
            labels, _, value = line.rpartition(" ")
            method = labels.split('grpc_method="', 1)[1].split('"', 1)[0]
            counts[method] = counts.get(method, 0.0) + float(value)
    return counts


def etcd_traffic(
    before: dict[str, float] | None, after: dict[str, float] | None, run: dict[str, Any]
) -> dict[str, Any]:
    """The requests etcd served during one run: per method, per group, and the heartbeat
    rate (lease keep-alives per second of the run: constant per bastion, not per group)."""
    if before is None or after is None or "failed" in run:
        return {}
    done = {m: after[m] - before.get(m, 0.0) for m in after if after[m] - before.get(m, 0.0)}
    wall = run["wall_s"]
    return {
        "etcd_requests": done,
        "etcd_requests_per_group": sum(done.values()) / run["groups"],
        "etcd_keepalives_per_s": done.get("LeaseKeepAlive", 0.0) / wall if wall else 0.0,
        "etcd_lease_grants": done.get("LeaseGrant", 0.0),
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own 127.0.0.1 URL
            return bool(r.status == 200)
    except OSError:
        return False


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def _matrix(
    sizes: list[int], parallel: list[int], skip: frozenset[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    for n in sizes:
        for p in parallel:
            if p <= n and (n, p) not in skip:
                yield n, p


def print_report(rep: dict[str, Any]) -> None:
    print(f"\nharestart at scale — {rep['date']} — {rep['machine']}, Python {rep['python']}")
    print(
        "simulated fleets (unit-test fakes, restarts take no time); the real CLI, planner, "
        f"engine, journal and locks{'; env hook ' + rep['env_hook'] if rep['env_hook'] else ''}"
    )
    print(f"group locks: {rep.get('coordination', 'local')}\n")
    head = (
        f"{'groups':>7} {'par':>4} {'wall s':>8} {'preflight':>9} {'run':>7} {'CPU ms/grp':>10} "
        f"{'(kernel)':>8} "
        f"{'peak MB':>8} {'MB@10%':>7} {'MB@100%':>8} {'KB/grp':>7} {'blk/grp':>8} "
        f"{'load avg':>15}  ok"
    )
    print("harestart run --all --yes --format json (output discarded)")
    print(head)
    for r in rep["runs"]:
        if "failed" in r:
            print(f"{r['groups']:>7} {r['parallel']:>4}  FAILED: {r['failed'].splitlines()[-1:]}")
            continue
        ok = r["exit_code"] == 0 and r["restarts"] == 3 * r["groups"]
        print(
            f"{r['groups']:>7} {r['parallel']:>4} {r['wall_s']:>8.1f} "
            f"{r['preflight_wall_s']:>9.1f} {r['run_wall_s']:>7.1f} {r['cpu_ms_per_group']:>10.2f} "
            f"{r['sys_ms_per_group']:>8.2f} "
            f"{r['peak_rss_mb']:>8.0f} {r['rss_mb_after_10pct']:>7.0f} "
            f"{r['rss_mb_after_all']:>8.0f} {r['kb_per_finished_group']:>7.1f} "
            f"{r['blocks_per_finished_group']:>8.1f} {_load(r):>15}  {'yes' if ok else 'NO'}"
        )
    target = rep.get("target_cpu_ms_per_group", TARGET_CPU_MS_PER_GROUP)
    print(
        f"(target: under {target:.0f} ms CPU per group, flat as N grows; "
        "KB/grp and blk/grp (Python memory blocks): what each finished group leaves behind, "
        "between 10% and 100%; load average (1/5/15 min) as the run ended)"
    )
    print_coordination(rep["runs"])
    if rep["plans"]:
        print_plans(rep["plans"])
    if rep.get("plan_profile"):
        print_plan_profile(rep["plan_profile"])


def _load(r: dict[str, Any]) -> str:
    return "/".join(f"{x:.1f}" for x in r.get("load_avg", ()))


def print_coordination(runs: list[dict[str, Any]]) -> None:
    """What kept the locks alive: sessions, threads, heartbeats (ours and etcd's count)."""
    shown = [r for r in runs if "failed" not in r and "heartbeat_passes" in r]
    if not shown:
        return
    print("\ncoordination: sessions, threads and heartbeats during the run")
    print(
        f"{'groups':>7} {'par':>4} {'sessions':>8} {'held max':>8} {'threads':>7} "
        f"{'beats/s':>7} {'etcd keepalive/s':>16} {'etcd req/grp':>12} {'lease grants':>12} "
        f"{'load avg':>15}"
    )
    for r in shown:
        etcd = "etcd_requests" in r
        print(
            f"{r['groups']:>7} {r['parallel']:>4} {r['coordination_sessions_max']:>8} "
            f"{r['groups_held_max']:>8} {r['threads_max']:>7} "
            f"{r['heartbeat_passes_per_s']:>7.2f} "
            f"{r['etcd_keepalives_per_s'] if etcd else float('nan'):>16.2f} "
            f"{r['etcd_requests_per_group'] if etcd else float('nan'):>12.1f} "
            f"{r['etcd_lease_grants'] if etcd else float('nan'):>12.0f} {_load(r):>15}"
        )
    print(
        "(beats/s: heartbeat passes of this process's sessions, each renewing every group held; "
        "etcd keepalive/s: lease keep-alives etcd served per second of the run)"
    )


PLAN_TARGETS = {1_000: (0.5, None), 10_000: (3.0, 300.0)}  # groups: (wall s, peak MB)


def print_plans(plans: list[dict[str, Any]]) -> None:
    print("\nharestart plan --format json (a fresh process, output discarded; median of runs)")
    print(
        f"{'groups':>7} {'wall s':>8} {'CPU s':>7} {'CPU ms/grp':>10} {'peak MB':>8} "
        f"{'target':>14} {'load avg (1/5/15 min)':>22}  ok"
    )
    for p in plans:
        wall, mb = PLAN_TARGETS.get(p["groups"], (None, None))
        target = (f"<{wall:g} s" if wall else "") + (f", <{mb:.0f} MB" if mb else "")
        load = "/".join(f"{x:.1f}" for x in p.get("load_avg", ()))
        print(
            f"{p['groups']:>7} {p['wall_s']:>8.2f} {p['cpu_s']:>7.2f} "
            f"{p['cpu_ms_per_group']:>10.2f} {p['peak_rss_mb']:>8.0f} {target:>14} {load:>22}  "
            f"{'yes' if p['exit_code'] == 0 else 'NO: ' + p['stderr'][-200:]}"
        )


def print_plan_profile(prof: dict[str, Any]) -> None:
    if "failed" in prof:
        print(f"\nplan profile of {prof['groups']} groups FAILED: {prof['failed'][-300:]}")
        return
    load = "/".join(f"{x:.1f}" for x in prof["load_avg"])
    print(
        f"\nWhere `plan` of {prof['groups']} groups goes (cProfile, {prof['profiled_s']:.1f} s "
        f"profiled, load average {load}): top by own time"
    )
    print(f"{'own s':>7} {'cum s':>7} {'calls':>9}  function")
    for e in prof["top_own_time"]:
        print(f"{e['own_s']:>7.2f} {e['cum_s']:>7.2f} {e['calls']:>9}  {e['function']}")
    print("top by cumulative time, harestart's own functions")
    for e in prof["top_cumulative_harestart"]:
        print(f"{e['own_s']:>7.2f} {e['cum_s']:>7.2f} {e['calls']:>9}  {e['function']}")
    print(
        f"tracemalloc: peak {prof['traced_peak_mb']:.0f} MB traced; alive once the inventory "
        f"is loaded: {prof['alive_after_load_mb']:.0f} MB, the largest sites:"
    )
    for m in prof["top_alive_after_load"][:8]:
        print(f"{m['mb']:>7.1f} MB {m['blocks']:>9} blocks  {m['site']}")


if __name__ == "__main__":
    sys.exit(main())
