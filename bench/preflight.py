"""`python -m bench.preflight`: what preflight costs, groups side by side and a frozen host.

    python -m bench.preflight [--groups 200] [--delay 0.05] [--parallel 1,32]
                              [--ssh-timeout 10] [--mysql-timeout 5] [--json PATH]

1. **Groups.** ``engine.prepare.prepare`` (what ``harestart run`` checks before anything
   changes: lock, journal, each group's hosts observed, the judge) of ``--groups`` simulated
   groups (``bench.scale``'s fleet: the unit tests' fakes, source and 2 replicas and MHA),
   where every remote question (an SSH command or session, a SQL question, MHA's status)
   waits ``--delay`` seconds, as a network round trip would. Once per ``--parallel`` value
   (``--preflight-parallel``; 1 is one group after the other, as before #24).
2. **A frozen host.** One node observed with the real adapters (paramiko, pymysql) against
   two local ports that accept a connection and never say a word (an sshd and a mysqld that
   hang: ``kill -STOP``), with the inventory's timeouts (``--ssh-timeout``,
   ``--mysql-timeout``). Measured as ``observe_node`` does it now (SSH and MySQL together) and
   as it did before #24 (the SSH check, then MySQL: the same two calls one after the other).

Wall times (``time.perf_counter``) with the load average beside each (``os.getloadavg``:
figures from a loaded machine are upper bounds). Results: a table on stdout and JSON
(default build/bench-preflight.json). Nothing is asserted; tests never assert timings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from bench.scale import PASSWORD_ENV, Fleet
from harestart.adapters.protocols import CommandResult, Connector, FailoverManager
from harestart.adapters.ssh import ParamikoConnector
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.domain.topology import MhaStatus, ReplicaStatus, ServerInfo
from harestart.engine import observe as observe_module
from harestart.engine.prepare import prepare
from harestart.engine.run import RunRequest
from harestart.inventory.load import load_inventory
from tests.unit.fakes import FakeCommands, FakeMha, FakeProbe, FakeShell

REPO = Path(__file__).resolve().parents[1]


# --- 1. groups side by side --------------------------------------------------------------------


class _SlowShell(FakeShell):
    delay = 0.0

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        time.sleep(self.delay)  # a round trip (a benchmark's simulated network, not a wait)
        return super().run(command, sudo=sudo, timeout=timeout, check=check)

    def connect(self) -> None:
        time.sleep(self.delay)
        super().connect()


class _SlowProbe(FakeProbe):
    delay = 0.0

    def server_info(self) -> ServerInfo:
        time.sleep(self.delay)
        return super().server_info()

    def replica_status(self) -> ReplicaStatus | None:
        time.sleep(self.delay)
        return super().replica_status()


class _SlowMha(FakeMha):
    delay = 0.0

    def status(self) -> MhaStatus:
        time.sleep(self.delay)
        return super().status()


class _SlowConnector:
    def __init__(self, fleet: Fleet, delay: float) -> None:
        self.fleet, self.delay = fleet, delay

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        shell = _SlowShell(self.fleet.routes[name], name)
        shell.delay = self.delay
        return shell

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        probe = _SlowProbe(self.fleet.routes[name], name)
        probe.delay = self.delay
        return probe

    def commands(self, name: str, endpoint: MysqlEndpoint) -> FakeCommands:
        return FakeCommands(self.fleet.routes[name], name)

    def close_all(self) -> None:
        pass


def measure_groups(groups: int, delay: float, parallel: int) -> dict[str, Any]:
    """``prepare`` of ``groups`` simulated groups, ``parallel`` at once."""
    os.environ.setdefault(PASSWORD_ENV, "bench-password")
    with tempfile.TemporaryDirectory(prefix="harestart-preflight-") as tmp:
        fleet = Fleet(groups, Path(tmp))

        def failover_manager(group: Group, connector: Connector) -> FailoverManager:
            world = fleet.worlds[group.id]
            mha = _SlowMha(world, FakeShell(world, group.mha.manager.name))
            mha.delay = delay
            return mha

        env = dataclasses.replace(
            fleet.environment(),
            connector=lambda: _SlowConnector(fleet, delay),
            failover_manager=failover_manager,
        )
        inventory = load_inventory(str(fleet.inventory))
        request = RunRequest(inventory=str(fleet.inventory), preflight_parallel=parallel)
        load = os.getloadavg()
        t0 = time.perf_counter()
        with prepare(inventory.groups, request, env) as prepared:
            wall = time.perf_counter() - t0
            ready = len(prepared.ready)
    return {
        "groups": groups,
        "delay_s": delay,
        "preflight_parallel": parallel,
        "wall_s": round(wall, 3),
        "per_group_ms": round(wall / groups * 1000, 2),
        "ready": ready,
        "loadavg": [round(x, 2) for x in load],
    }


# --- 2. a frozen host --------------------------------------------------------------------------


@contextlib.contextmanager
def _black_hole() -> Iterator[int]:
    """A local port that accepts connections and never answers (a stopped server's socket:
    the kernel still completes the handshake)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    closed = threading.Event()

    def accept() -> None:
        while not closed.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        closed.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in held:
            conn.close()
        thread.join(timeout=2)


def _frozen_inventory(
    path: Path, ssh_port: int, mysql_port: int, ssh_s: float, sql_s: float
) -> str:
    path.write_text(
        "defaults:\n"
        f"  ssh: {{user: ops, connect_timeout: {ssh_s}}}\n"
        f"  mysql: {{user: harestart, password_env: {PASSWORD_ENV}, connect_timeout: {sql_s}}}\n"
        "groups:\n"
        "  - id: frozen\n"
        "    account: '1'\n"
        "    source: {name: db1, address: 127.0.0.1,\n"
        f"             ssh: {{port: {ssh_port}}}, mysql: {{port: {mysql_port}}}}}\n"
        "    replicas: [{name: db2, address: 127.0.0.2}]\n"
        "    mha: {manager: {name: mha, address: 127.0.0.3}, config: /etc/mha/app.cnf}\n"
    )
    return str(path)


def measure_frozen(ssh_timeout: float, mysql_timeout: float) -> list[dict[str, Any]]:
    """One frozen node observed now (SSH and MySQL together) and as before (one, then the
    other), with the real adapters."""
    os.environ.setdefault(PASSWORD_ENV, "bench-password")
    out: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="harestart-frozen-") as tmp,
        _black_hole() as ssh_port,
        _black_hole() as mysql_port,
    ):
        path = _frozen_inventory(
            Path(tmp) / "frozen.yml", ssh_port, mysql_port, ssh_timeout, mysql_timeout
        )
        node = load_inventory(path).groups[0].source
        ways: dict[str, Callable[[ParamikoConnector], object]] = {
            "together (now)": lambda c: observe_module.observe_node(node, c),
            "ssh then mysql (before)": lambda c: (
                observe_module._ssh_check(node, c),  # the former order
                observe_module._mysql_look(node, c),
            ),
        }
        for way, observe in ways.items():
            connector = ParamikoConnector()
            load = os.getloadavg()
            t0 = time.perf_counter()
            observed = observe(connector)
            wall = time.perf_counter() - t0
            connector.close_all()
            out.append(
                {
                    "way": way,
                    "ssh_timeout_s": ssh_timeout,
                    "mysql_timeout_s": mysql_timeout,
                    "wall_s": round(wall, 3),
                    "observed": str(observed)[:300],
                    "loadavg": [round(x, 2) for x in load],
                }
            )
    return out


# --- the command -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preflight", description=__doc__)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per remote question")
    parser.add_argument("--parallel", default="1,32", help="--preflight-parallel values")
    parser.add_argument("--ssh-timeout", type=float, default=10.0)
    parser.add_argument("--mysql-timeout", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=REPO / "build" / "bench-preflight.json")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)  # not measured
    )
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # its reader threads' timeouts
    report: dict[str, Any] = {
        "bench": "preflight",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "groups": [],
        "frozen": [],
    }
    print(f"{'preflight of N groups':<28} {'P':>4} {'wall s':>8} {'ms/group':>9}  loadavg")
    for p in [int(x) for x in args.parallel.split(",")]:
        row = measure_groups(args.groups, args.delay, p)
        report["groups"].append(row)
        print(
            f"{args.groups} groups, {args.delay:g} s/question  {p:>4} {row['wall_s']:>8.2f} "
            f"{row['per_group_ms']:>9.1f}  {row['loadavg']}"
        )
    print(f"\n{'a frozen host':<28} {'wall s':>8}  loadavg")
    for row in measure_frozen(args.ssh_timeout, args.mysql_timeout):
        report["frozen"].append(row)
        print(f"{row['way']:<28} {row['wall_s']:>8.2f}  {row['loadavg']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
