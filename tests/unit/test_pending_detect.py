"""Pending restarts, detected and shown (#23): the host script under a real ``sh`` on this
machine, detection in the observation (one host command per node, standing in for the SSH
check), and ``status`` in text and JSON. Hosts are fakes answering with captured output of the
real lab servers (tests/data/pending)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harestart.adapters.protocols import CommandResult
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.judge import RunFacts
from harestart.domain.pending import (
    ReasonKind,
    ServerSettings,
    host_script,
    judge_pending,
    parse_host_facts,
    parse_settings,
)
from harestart.domain.topology import Flavor, ServerInfo, flavor_from_version, version_tuple
from harestart.engine.observe import observe_group
from harestart.errors import MysqlError, SshError
from harestart.views.status import render_status_text, status_document
from tests.unit.fakes import FakeConnector, FakeMha, FakeProbe, FakeShell, FakeWorld
from tests.unit.test_executor import lab_group

DATA = Path(__file__).resolve().parents[1] / "data" / "pending"

# --- the script itself, under this machine's sh ---------------------------------------------


@pytest.fixture
def fake_mysqld(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A process named mysqld (a copy of sleep) and its pid file."""
    exe = tmp_path / "mysqld"
    shutil.copy("/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "300"])
    pid_file = tmp_path / "mysqld.pid"
    pid_file.write_text(f"{proc.pid}\n")
    try:
        yield pid_file, proc.pid
    finally:
        proc.kill()
        proc.wait()


def run_script(pid_file: Path) -> str:
    command = host_script(str(pid_file), ("mysqld", "server"))
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_script_finds_the_server_and_its_libraries(fake_mysqld: tuple[Path, int]) -> None:
    pid_file, pid = fake_mysqld
    facts = parse_host_facts(run_script(pid_file))
    assert facts.pid == pid
    assert facts.exe == str(pid_file.parent / "mysqld")
    assert not facts.exe_deleted
    assert facts.exe_inode == facts.exe_disk_inode == (pid_file.parent / "mysqld").stat().st_ino
    assert any("libc.so" in lib.path for lib in facts.libraries)
    assert not any(lib.replaced for lib in facts.libraries)
    assert facts.command_line == ("300",)
    report = judge_pending(None, facts, settings_error="not asked here")
    assert {r.kind for r in report.pending_restart} == {ReasonKind.UNKNOWN}


def test_the_script_sees_an_executable_renamed_over(fake_mysqld: tuple[Path, int]) -> None:
    """What a package upgrade does: a new file renamed over the running one."""
    pid_file, _ = fake_mysqld
    exe = pid_file.parent / "mysqld"
    shutil.copy(exe, pid_file.parent / "mysqld.new")
    (pid_file.parent / "mysqld.new").rename(exe)
    facts = parse_host_facts(run_script(pid_file))
    assert facts.exe_deleted
    reasons = [r for r in judge_pending(None, facts).pending_restart if r.kind is ReasonKind.BINARY]
    assert [r.subject for r in reasons] == [str(exe)]


def test_the_script_says_when_there_is_no_server(tmp_path: Path) -> None:
    facts = parse_host_facts(run_script(tmp_path / "no.pid"))
    assert facts.user
    if facts.pid is None:  # pidof found no real mysqld here, or several (lab containers')
        assert facts.pid_error is not None
        assert "no mariadbd or mysqld process" in facts.pid_error or "several" in facts.pid_error
        assert f"pid file {tmp_path / 'no.pid'}" in facts.pid_error


def test_the_pid_file_and_groups_are_quoted() -> None:
    command = host_script("/run/my sql/x'.pid", ("--mysqld",))
    assert command.startswith("sh -c '")
    inner = subprocess.run(
        ["sh", "-c", f"printf %s {command.removeprefix('sh -c ')}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pf='/run/my sql/x'\"'\"'.pid'" in inner
    assert 'my_print_defaults "$@" --mysqld 2>&1' in inner


# --- detection in the observation ----------------------------------------------------------


def captured(flavor: str) -> tuple[ServerSettings, str]:
    doc = json.loads((DATA / f"{flavor}-variables.json").read_text())
    version = doc["version"]
    return parse_settings(
        flavor_from_version(version), version_tuple(version), doc["results"]
    ), version


class LabProbe(FakeProbe):
    """A fake server that reports the captured variables and version of a real one."""

    def __init__(self, world: FakeWorld, name: str, flavor: str) -> None:
        super().__init__(world, name)
        self.settings, self.version = captured(flavor)

    def server_info(self) -> ServerInfo:
        info = super().server_info()
        numbers = version_tuple(self.version)
        return ServerInfo(
            version=self.version,
            flavor=flavor_from_version(self.version),
            version_tuple=numbers,
            server_id=info.server_id,
            read_only=info.read_only,
            uptime=info.uptime,
            hostname=info.hostname,
        )

    def server_settings(self) -> ServerSettings:
        self._node()
        return self.settings


class LabShell(FakeShell):
    """Answers the detection command with a captured output; records every command."""

    def __init__(self, world: FakeWorld, name: str, output: str, log: list[str]) -> None:
        super().__init__(world, name)
        self.output, self.log = output, log

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        self.log.append(f"{self.host}: {' '.join(command.split()[:2])}")
        if command.startswith("sh -c "):
            node = self.world.nodes.get(self.host)
            if node is not None and node.ssh_unreachable:
                raise SshError(self.host, "connect", "connection refused")
            if self.output.startswith("exit "):
                return CommandResult(
                    command, int(self.output.split()[1]), "", "sudo: a password is required", 0.01
                )
            return CommandResult(command, 0, self.output, "", 0.01)
        return super().run(command, sudo=sudo, timeout=timeout, check=check)


class LabConnector(FakeConnector):
    def __init__(self, world: FakeWorld, flavor: str, outputs: dict[str, str]) -> None:
        super().__init__(world)
        self.flavor, self.outputs = flavor, outputs
        self.sent_commands: list[str] = []

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        output = self.outputs.get(name, (DATA / f"{self.flavor}-host-fresh.txt").read_text())
        return LabShell(self.world, name, output, self.sent_commands)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        return LabProbe(self.world, name, self.flavor)


def observe(flavor: str, outputs: dict[str, str] | None = None, world: FakeWorld | None = None):  # type: ignore[no-untyped-def]
    world = world or FakeWorld.create(replicas=2)
    connector = LabConnector(world, flavor, outputs or {})
    state = observe_group(
        lab_group(2), connector, FakeMha(world, FakeShell(world, "mha")), detect_pending=True
    )
    return state, connector


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_one_host_command_per_node_and_no_ssh_check_besides(flavor: str) -> None:
    state, connector = observe(flavor)
    assert sorted(connector.sent_commands) == [
        "db1: sh -c",
        "db2: sh -c",
        "db3: sh -c",
    ]
    for node in state.nodes:
        assert node.reachable and node.pending is not None
        assert node.pending_restart == () and node.config_drift == ()


def test_without_detection_the_observation_is_as_before() -> None:
    world = FakeWorld.create(replicas=2)
    connector = LabConnector(world, "mariadb", {})
    state = observe_group(lab_group(2), connector, FakeMha(world, FakeShell(world, "mha")))
    assert sorted(connector.sent_commands) == ["db1: true", "db2: true", "db3: true"]
    assert all(n.pending is None for n in state.nodes)
    assert all("pending_restart" not in n.to_dict() for n in state.nodes)


def test_each_node_gets_its_own_reasons() -> None:
    replaced = (DATA / "mariadb-host-replaced.txt").read_text()
    no_sudo = "exit 1"
    state, _ = observe("mariadb", {"db2": replaced, "db3": no_sudo})
    db1, db2, db3 = state.nodes
    assert db1.pending_restart == ()
    assert {r.kind for r in db2.pending_restart} >= {ReasonKind.BINARY, ReasonKind.LIBRARY}
    (reason,) = db3.pending_restart
    assert reason.kind is ReasonKind.UNKNOWN
    assert reason.text == (
        "cannot check the host: the detection command exited 1: sudo: a password is required"
    )
    assert db3.reachable  # the host answered: only the detection failed


def test_unreachable_hosts_and_servers_are_unknown() -> None:
    world = FakeWorld.create(replicas=2)
    world.nodes["db2"].ssh_unreachable = True
    world.nodes["db3"].down_until = world.clock.now() + 100
    state, _ = observe("mysql", world=world)
    _, db2, db3 = state.nodes
    assert db2.ssh_error == "connection refused" and not db2.reachable
    assert [r.text for r in db2.pending_restart] == ["cannot check the host: connection refused"]
    assert db3.mysql_error is not None
    assert [r.text for r in db3.pending_restart] == [
        "MySQL unreachable: (2003) Can't connect to MySQL server"
    ]


def test_a_server_that_will_not_list_its_variables() -> None:
    class Refusing(LabProbe):
        def server_settings(self) -> ServerSettings:
            raise MysqlError(self.name, "read global variables", "(1142) SELECT command denied")

    class Connector(LabConnector):
        def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
            return Refusing(self.world, name, self.flavor)

    world = FakeWorld.create(replicas=1)
    state = observe_group(
        lab_group(1),
        Connector(world, "mysql", {}),
        FakeMha(world, FakeShell(world, "mha")),
        detect_pending=True,
    )
    texts = [r.text for r in state.nodes[0].pending_restart]
    assert texts == ["cannot read the server's variables: (1142) SELECT command denied"]


# --- status -----------------------------------------------------------------------------------


def test_status_json_gives_each_node_both_lists() -> None:
    replaced = (DATA / "mysql-host-replaced.txt").read_text()
    state, _ = observe("mysql", {"db3": replaced})
    doc = status_document(lab_group(2), state, RunFacts())
    db1, _, db3 = doc["nodes"]
    assert db1["pending_restart"] == [] and db1["config_drift"] == []
    kinds = [r["kind"] for r in db3["pending_restart"]]
    assert "binary" in kinds and "library" in kinds
    assert set(db3["pending_restart"][0]) == {"kind", "subject", "configured", "running", "text"}
    # the rest of the document as it was
    assert {"name", "role", "reachable", "version", "uptime_s"} <= set(db1)
    assert doc["healthy"] is True


def test_status_text_names_each_pending_node_and_the_drift() -> None:
    replaced = (DATA / "mariadb-host-replaced.txt").read_text()
    drift = (DATA / "mariadb-host-fresh.txt").read_text() + "opt\t--max_connections=150\n"
    state, _ = observe("mariadb", {"db2": replaced, "db3": drift})
    text = render_status_text(status_document(lab_group(2), state, RunFacts()))
    lines = [ln for ln in text.splitlines() if "pending restart" in ln or "drift" in ln]
    assert lines[0] == (
        "  pending restart: db2: binary: the executable mysqld runs, /usr/sbin/mariadbd, was "
        "deleted or replaced on disk"
    )
    assert all(" db2: " in ln for ln in lines[:-1])
    assert lines[-1] == (
        "  config drift: db3: config: max_connections: set at run time, differs from the option "
        "file: mysqld runs with 100, the option file says 150"
    )


def test_status_text_says_when_nothing_is_pending() -> None:
    state, _ = observe("mysql")
    text = render_status_text(status_document(lab_group(2), state, RunFacts()))
    assert "  pending restart: none" in text.splitlines()
    assert "drift" not in text


def test_mariadb_flavour_settings_of_the_fakes() -> None:
    """The shared fakes answer ``server_settings`` too (every MysqlProbe does)."""
    world = FakeWorld.create(replicas=1)
    settings = FakeProbe(world, "db2").server_settings()
    assert settings.flavor is Flavor.MARIADB
    assert settings.value("read_only") == "ON"
