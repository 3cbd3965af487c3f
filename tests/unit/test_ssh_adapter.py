"""Adapters without a lab: an in-process paramiko SSH server on 127.0.0.1, closed ports, and
a scripted shell for the MHA adapter. The real sshd / mysqld / MHA come from the lab tests."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paramiko
import paramiko.common
import pytest
from structlog.testing import capture_logs

from harestart.adapters.mha import MhaManager
from harestart.adapters.mysql import MysqlSession, PyMysqlReader
from harestart.adapters.protocols import CommandResult
from harestart.adapters.ssh import (
    ParamikoConnector,
    ParamikoShell,
    known_hosts_name,
    translate,
    wrap_sudo,
)
from harestart.domain.commands import detached, started_pid
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.secret import Secret
from harestart.domain.topology import MhaState
from harestart.engine.sequencer.waiting import poll_until
from harestart.errors import CommandFailed, HostKeyError, MhaError, MysqlError, SshError
from harestart.inventory.defaults import mha_defaults
from harestart.inventory.resolve import ssh_endpoint
from harestart.inventory.schema import SshSpec


def ssh_at(spec: SshSpec) -> SshEndpoint:
    """An SSH endpoint as the inventory resolves it: ``spec`` over the defaults table."""
    return ssh_endpoint((spec,), "unused", Path("/"))


def mysql_at(
    host: str,
    user: str,
    *,
    port: int = 3306,
    tunnel: SshEndpoint | None = None,
    password: Secret | None = None,
    connect_timeout: float = 5.0,
) -> MysqlEndpoint:
    return MysqlEndpoint(
        host=host,
        port=port,
        user=user,
        password=password,
        connect_timeout=connect_timeout,
        read_timeout=30.0,
        tunnel=tunnel,
    )


def mha_manager(
    shell: ScriptedShell, config: str = "/etc/mha/app1.cnf", log: str | None = None
) -> MhaManager:
    """An MHA adapter with the inventory's default commands for ``config``."""
    d = mha_defaults(config)
    return MhaManager(
        shell, config_path=config, log_path=log or d.log, status_command=d.status_command
    )


# -- an SSH server good enough for the adapter ------------------------------------------------


class _Handler(paramiko.ServerInterface):
    def __init__(self, server: FakeSshd) -> None:
        self.server = server
        self.tcpip: set[int] = set()

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.common.OPEN_SUCCEEDED
        return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        if destination[0] != "127.0.0.1":
            return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.server.destinations[chanid] = destination
        self.tcpip.add(chanid)
        return paramiko.common.OPEN_SUCCEEDED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "ops" and key.asbytes() == self.server.client_key.asbytes()
        return paramiko.common.AUTH_SUCCESSFUL if ok else paramiko.common.AUTH_FAILED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.server.commands.append(command.decode())
        threading.Thread(target=_answer, args=(channel, command.decode()), daemon=True).start()
        return True


def _answer(channel: paramiko.Channel, command: str) -> None:
    # The client closes stdin only after it got the exec reply: answering before that could
    # close the channel ahead of the reply, which sshd never does.
    channel.recv(1)
    if command == "hang":
        return  # never answers; the client must time out
    channel.sendall(f"out:{command}\n".encode())
    channel.sendall_stderr(b"err line\n")
    channel.send_exit_status(3 if command.startswith("fail") else 0)
    channel.close()


def _forward(channel: paramiko.Channel, destination: tuple[str, int]) -> None:
    from harestart.adapters.ssh import _shovel  # the same pump the client uses

    with contextlib.suppress(OSError, EOFError), socket.create_connection(destination) as conn:
        _shovel(conn, channel, threading.Event())
    with contextlib.suppress(OSError, EOFError):
        channel.close()


@dataclass
class FakeSshd:
    host_key: paramiko.RSAKey
    client_key: paramiko.RSAKey
    port: int = 0
    commands: list[str] = field(default_factory=list)
    destinations: dict[int, tuple[str, int]] = field(default_factory=dict)
    transports: list[paramiko.Transport] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            handler = _Handler(self)
            self.transports.append(transport)
            try:
                transport.start_server(server=handler)
            except (paramiko.SSHException, EOFError, OSError):
                continue
            threading.Thread(
                target=self._accept_channels, args=(transport, handler), daemon=True
            ).start()

    def _accept_channels(self, transport: paramiko.Transport, handler: _Handler) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=0.2)
            if channel is not None and channel.get_id() in handler.tcpip:
                destination = self.destinations[channel.get_id()]
                threading.Thread(target=_forward, args=(channel, destination), daemon=True).start()


@dataclass
class Lab:
    sshd: FakeSshd
    endpoint: SshEndpoint
    known_hosts: Path


_KEYS: dict[str, paramiko.RSAKey] = {}


def _key(name: str) -> paramiko.RSAKey:
    if name not in _KEYS:
        _KEYS[name] = paramiko.RSAKey.generate(1024)
    return _KEYS[name]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    sshd = FakeSshd(host_key=_key("host"), client_key=_key("client"))
    listener = socket.create_server(("127.0.0.1", 0))
    sshd.port = listener.getsockname()[1]
    threading.Thread(target=sshd.serve, args=(listener,), daemon=True).start()
    key_file = tmp_path / "id_rsa"
    sshd.client_key.write_private_key_file(str(key_file))
    known = tmp_path / "known_hosts"
    host_entry = known_hosts_name("127.0.0.1", sshd.port)
    known.write_text(f"{host_entry} ssh-rsa {sshd.host_key.get_base64()}\n")
    endpoint = ssh_at(
        SshSpec(
            host="127.0.0.1",
            port=sshd.port,
            user="ops",
            key_file=str(key_file),
            known_hosts=str(known),
            connect_timeout=2,
            command_timeout=5,
        )
    )
    yield Lab(sshd, endpoint, known)
    listener.close()
    for transport in sshd.transports:
        transport.close()


@pytest.fixture
def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


# -- pure helpers ----------------------------------------------------------------------------


def test_wrap_sudo_quotes_the_whole_command() -> None:
    command = "echo 'it''s' \"$HOME\" && service mariadb restart; id"
    wrapped = wrap_sudo(command)
    assert wrapped.startswith("sudo -n -- sh -c ")
    assert shlex.split(wrapped) == ["sudo", "-n", "--", "sh", "-c", command]


def test_known_hosts_name_brackets_non_default_ports() -> None:
    assert known_hosts_name("db1", 22) == "db1"
    assert known_hosts_name("127.0.0.1", 2212) == "[127.0.0.1]:2212"


def test_changed_host_key_is_a_host_key_error() -> None:
    endpoint = ssh_at(SshSpec(host="127.0.0.1", port=2212, known_hosts="/etc/ssh/kh"))
    exc = paramiko.BadHostKeyException("127.0.0.1", _key("other"), _key("host"))
    error = translate("db1", "connect", exc, endpoint)
    assert isinstance(error, HostKeyError)
    text = str(error)
    assert text.startswith("db1: verify host key: host key for [127.0.0.1]:2212 does not match")
    assert "known_hosts /etc/ssh/kh" in text
    assert "possible man-in-the-middle" in text
    assert "SHA256:" in text


def test_authentication_failure_names_the_user() -> None:
    endpoint = ssh_at(SshSpec(host="db1", user="ops", key_file="/k/id"))
    error = translate("db1", "connect", paramiko.AuthenticationException("x"), endpoint)
    assert error.reason == "authentication failed for user ops (tried key /k/id)"


def test_timeout_reason() -> None:
    endpoint = ssh_at(SshSpec(host="db1", connect_timeout=10))
    assert translate("db1", "connect", TimeoutError(), endpoint).reason == (
        "timed out after 10 s (db1:22)"
    )


@pytest.mark.parametrize(
    "said", ["No existing session", "Error reading SSH protocol banner[Errno 104] reset"]
)
def test_a_silent_sshd_is_named_as_such(said: str) -> None:
    endpoint = ssh_at(SshSpec(host="db1", connect_timeout=10))
    assert translate("db1", "connect", paramiko.SSHException(said), endpoint).reason == (
        "no SSH handshake within 10 s (db1:22): the port accepts connections but sshd does "
        "not answer (host frozen or overloaded?)"
    )


# -- against the in-process server -----------------------------------------------------------


def test_connection_refused(closed_port: int) -> None:
    shell = ParamikoShell("db1", ssh_at(SshSpec(host="127.0.0.1", port=closed_port)))
    with pytest.raises(SshError) as info:
        shell.run("true")
    assert info.value.host == "db1"
    assert info.value.action == "connect"
    assert info.value.reason == f"connection refused (127.0.0.1:{closed_port})"


def test_connect_opens_the_session_commands_then_use(lab: Lab, closed_port: int) -> None:
    """``connect`` (an observation reaching SSH while it asks MySQL): no command is sent, the
    next command reuses the connection; a host that does not answer is the same SshError as
    ``run``'s."""
    shell = ParamikoShell("db1", lab.endpoint)
    shell.connect()
    transport = shell.transport()
    assert lab.sshd.commands == []
    shell.connect()  # already open: the same connection
    assert shell.run("after").stdout == "out:after\n" and shell.transport() is transport
    shell.close()
    refused = ParamikoShell("db1", ssh_at(SshSpec(host="127.0.0.1", port=closed_port)))
    with pytest.raises(SshError) as info:
        refused.connect()
    assert (info.value.action, info.value.reason) == (
        "connect",
        f"connection refused (127.0.0.1:{closed_port})",
    )


SILENT_HOST = """
import sys
from harestart.adapters.ssh import ParamikoShell
from harestart.errors import SshError
from harestart.inventory.schema import SshSpec
from tests.unit.test_ssh_adapter import ssh_at

shell = ParamikoShell("db1", ssh_at(SshSpec(host="127.0.0.1", port=int(sys.argv[1]),
                                            connect_timeout=0.5)))
try:
    shell.connect()
except SshError as exc:
    print(exc.action, exc.reason)
"""


def test_a_host_that_never_sends_its_banner_prints_no_traceback() -> None:
    """paramiko's transport thread logs the failed handshake with its traceback through the
    standard logging module; a command with no logging handler (``status``) printed it on
    stderr. In a fresh interpreter (pytest installs logging handlers of its own)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        out = subprocess.run(
            [sys.executable, "-c", SILENT_HOST, str(silent.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("connect "), out.stdout
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr, out.stderr


def test_run_captures_output_and_logs(lab: Lab) -> None:
    shell = ParamikoShell("db1", lab.endpoint)
    with capture_logs() as logs:
        result = shell.run("uptime")
    shell.close()
    assert result.command == "uptime"
    assert result.exit_status == 0
    assert result.stdout == "out:uptime\n"
    assert result.stderr == "err line\n"
    assert result.duration_s >= 0
    event = next(e for e in logs if e["event"] == "ssh.command")
    assert event["host"] == "db1"
    assert event["command"] == "uptime"
    assert event["exit_status"] == 0


def test_non_zero_exit(lab: Lab) -> None:
    shell = ParamikoShell("db1", lab.endpoint)
    with pytest.raises(CommandFailed) as info:
        shell.run("fail hard")
    assert info.value.exit_status == 3
    assert str(info.value) == "db1: run `fail hard`: exit status 3: err line"
    assert shell.run("fail again", check=False).exit_status == 3
    shell.close()


def test_sudo_wraps_what_is_sent_not_what_is_shown(lab: Lab) -> None:
    shell = ParamikoShell("db1", replace(lab.endpoint, sudo=True))
    result = shell.run("service mariadb restart")
    assert result.command == "service mariadb restart"
    assert lab.sshd.commands[-1] == "sudo -n -- sh -c 'service mariadb restart'"
    shell.run("id", sudo=False)
    assert lab.sshd.commands[-1] == "id"
    shell.close()


def test_command_timeout(lab: Lab) -> None:
    shell = ParamikoShell("db1", lab.endpoint)
    with pytest.raises(SshError, match=r"timed out after 0.2 s"):
        shell.run("hang", timeout=0.2)
    assert shell.run("after").exit_status == 0  # the connection is still usable
    shell.close()


def test_reconnects_when_the_transport_died(lab: Lab) -> None:
    shell = ParamikoShell("db1", lab.endpoint)
    shell.run("one")
    shell.transport().close()
    assert shell.run("two").stdout == "out:two\n"
    shell.close()


def test_unknown_host_is_refused(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    shell = ParamikoShell("db1", replace(lab.endpoint, known_hosts=str(empty)))
    with pytest.raises(HostKeyError) as info:
        shell.run("true")
    assert f"host key for [127.0.0.1]:{lab.sshd.port}" in str(info.value)
    assert f"is not in known_hosts {empty}" in str(info.value)
    assert "--accept-new-host-keys" in str(info.value)
    assert not empty.exists()


def test_accept_new_host_keys_records_them(lab: Lab, tmp_path: Path) -> None:
    fresh = tmp_path / "ssh" / "known_hosts"
    endpoint = replace(lab.endpoint, known_hosts=str(fresh), accept_new_host_keys=True)
    shell = ParamikoShell("db1", endpoint)
    shell.run("true")
    shell.close()
    line = f"[127.0.0.1]:{lab.sshd.port} ssh-rsa {lab.sshd.host_key.get_base64()}\n"
    assert fresh.read_text() == line
    # and from now on it is simply known
    strict = ParamikoShell("db1", replace(endpoint, accept_new_host_keys=False))
    strict.run("true")
    strict.close()


def test_changed_host_key_is_refused_even_with_accept_new(lab: Lab) -> None:
    name = known_hosts_name("127.0.0.1", lab.sshd.port)
    lab.known_hosts.write_text(f"{name} ssh-rsa {_key('other').get_base64()}\n")
    shell = ParamikoShell("db1", replace(lab.endpoint, accept_new_host_keys=True))
    with pytest.raises(HostKeyError, match=r"does not match known_hosts.*man-in-the-middle"):
        shell.run("true")


def test_authentication_failure(lab: Lab) -> None:
    shell = ParamikoShell("db1", replace(lab.endpoint, user="nobody"))
    with pytest.raises(SshError, match="authentication failed for user nobody"):
        shell.run("true")


def test_jump_host(lab: Lab) -> None:
    endpoint = replace(lab.endpoint, jump=lab.endpoint)
    shell = ParamikoShell("db2", endpoint)
    assert shell.run("via bastion").stdout == "out:via bastion\n"
    assert lab.sshd.destinations  # the target was reached through direct-tcpip
    shell.close()


def test_jump_host_that_cannot_reach_the_target(lab: Lab) -> None:
    endpoint = replace(lab.endpoint, host="10.255.255.1", jump=lab.endpoint)
    with pytest.raises(SshError) as info:
        ParamikoShell("db2", endpoint).run("true")
    assert info.value.action == f"connect via {lab.endpoint.host}"
    assert "jump host could not reach 10.255.255.1" in info.value.reason


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    while data := conn.recv(1024):
                        conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_forward_through_the_shell(lab: Lab) -> None:
    echo, port = _echo_server()
    shell = ParamikoShell("db1", lab.endpoint)
    local = shell.forward("127.0.0.1", port)
    assert local[0] == "127.0.0.1"
    with socket.create_connection(local, timeout=2) as conn:
        conn.sendall(b"ping")
        assert conn.recv(16) == b"PING"
    shell.close()
    echo.close()


def test_connector_caches_shells(lab: Lab) -> None:
    connector = ParamikoConnector()
    assert connector.shell("db1", lab.endpoint) is connector.shell("db1", lab.endpoint)
    assert connector.shell("db1", lab.endpoint) is not connector.shell("db2", lab.endpoint)
    connector.close_all()


# -- MySQL adapter without a server ----------------------------------------------------------


def test_mysql_connect_refused_names_host_and_hides_password(closed_port: int) -> None:
    endpoint = mysql_at(
        "127.0.0.1",
        "harestart",
        port=closed_port,
        password=Secret("hunter2-secret"),
        connect_timeout=1,
    )
    probe = PyMysqlReader(MysqlSession("db1", endpoint))
    with pytest.raises(MysqlError) as info:
        probe.server_info()
    assert info.value.host == "db1"
    assert info.value.action == f"connect to harestart@127.0.0.1:{closed_port}"
    assert info.value.reason.startswith("(2003) Can't connect")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(probe)
    assert probe.ping() is False


def test_mysql_server_that_never_greets_fails_within_connect_timeout() -> None:
    """A frozen host (docker pause) accepts TCP and never sends the greeting: the handshake is
    bounded by connect_timeout (1 s here), not by the queries' read_timeout (30 s)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = PyMysqlReader(
            MysqlSession("db1", mysql_at("127.0.0.1", "harestart", port=port, connect_timeout=1))
        )
        started = time.monotonic()
        with pytest.raises(MysqlError) as info:
            probe.server_info()
        took = time.monotonic() - started
    assert info.value.action == f"connect to harestart@127.0.0.1:{port}"
    assert took < 10, f"the handshake waited {took:.1f} s (read_timeout is 30 s)"


def test_mysql_tunnel_without_factory() -> None:
    endpoint = mysql_at("db1", "u", tunnel=ssh_at(SshSpec(host="bastion")))
    with pytest.raises(MysqlError, match="needs an SSH tunnel"):
        PyMysqlReader(MysqlSession("db1", endpoint)).uptime()


def test_mysql_tunnel_failure_is_a_mysql_error(closed_port: int) -> None:
    endpoint = mysql_at("db1", "u", tunnel=ssh_at(SshSpec(host="127.0.0.1", port=closed_port)))
    connector = ParamikoConnector()
    with pytest.raises(MysqlError, match=r"tunnel: .*connection refused"):
        connector.mysql("db1", endpoint).uptime()
    connector.close_all()


# -- MHA adapter over a scripted shell -------------------------------------------------------


@dataclass
class ScriptedShell:
    """Answers commands by prefix; records what ran."""

    answers: dict[str, tuple[int, str, str]]
    host: str = "mha"
    ran: list[str] = field(default_factory=list)

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        self.ran.append(command)
        for prefix, (status, out, err) in self.answers.items():
            if command.startswith(prefix):
                if check and status:
                    raise CommandFailed(self.host, f"run `{command}`", status, err)
                return CommandResult(command, status, out, err, 0.01)
        raise AssertionError(f"unexpected command {command!r}")

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_mha_default_commands() -> None:
    d = mha_defaults("/etc/mha/app 1.cnf")
    assert d.stop_command == "masterha_stop '--conf=/etc/mha/app 1.cnf'"
    assert d.status_command == "masterha_check_status '--conf=/etc/mha/app 1.cnf'"
    # The plan's StartMha command (harestart.domain.plan.build.start_mha) detaches it.
    assert detached(d.start_command, d.log) == (
        "mkdir -p '/var/log/mha/app 1'; setsid nohup masterha_manager "
        "'--conf=/etc/mha/app 1.cnf' --ignore_last_failover "
        "< /dev/null > '/var/log/mha/app 1/manager.log' 2>&1 & "
        'echo "harestart: started pid $!"'
    )


def test_detached_prints_the_pid_of_the_daemon_itself(tmp_path: Path) -> None:
    # setsid and nohup exec: the pid the shell prints is the long-lived process's own, which
    # the MhaRunning gate asks about (alive or gone) while the status still says NOT_RUNNING.
    command = detached("sleep 299", str(tmp_path / "log" / "out.log"))
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    pid = started_pid(out.stdout)
    assert pid is not None, out.stdout

    def cmdline() -> list[bytes]:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]

    try:  # the same process, once its execs (setsid, nohup) are done
        poll_until(lambda: cmdline() == [b"sleep", b"299"] or None, what="exec", timeout=30)
    finally:
        os.kill(pid, signal.SIGTERM)
    assert started_pid("no pid here\n") is None


def test_mha_status_stop_start_and_log_tail() -> None:
    shell = ScriptedShell(
        {
            "masterha_check_status": (0, "app1 (pid:1234) is running(0:PING_OK), master:db1\n", ""),
            "masterha_stop": (1, "Manager process 1234 didn't stop in 5 seconds.\n", ""),
            "mkdir -p": (0, "", ""),
            "tail -n 5": (0, "line\n", ""),
        }
    )
    mha = mha_manager(shell)
    status = mha.status()
    assert status.state is MhaState.PING_OK
    assert status.master == "db1"
    stop = "masterha_stop --conf=/etc/mha/app1.cnf"
    assert mha.stop(stop).exit_status == 1  # not trusted, not raised: the caller polls status
    start = "mkdir -p /var/log/mha; setsid nohup masterha_manager --conf=/etc/mha/app1.cnf &"
    assert mha.start(start).exit_status == 0
    assert shell.ran[-2:] == [stop, start]  # exactly the commands given (the plan's)
    assert mha.log_tail(5) == "line\n"
    assert shell.ran[-1] == "tail -n 5 /var/log/mha/app1/manager.log"


def test_mha_missing_commands_are_errors() -> None:
    shell = ScriptedShell(
        {"masterha_check_status": (127, "", "sh: masterha_check_status: not found")}
    )
    with pytest.raises(MhaError, match="cannot run `masterha_check_status"):
        mha_manager(shell).status()


def test_mha_status_from_stderr_and_exit_code() -> None:
    shell = ScriptedShell({"masterha_check_status": (2, "", "app1 is stopped(2:NOT_RUNNING).\n")})
    assert mha_manager(shell).status().stopped()


def test_mha_log_tail_when_unreadable() -> None:
    shell = ScriptedShell({"tail": (1, "", "tail: cannot open 'x': No such file or directory")})
    text = mha_manager(shell, log="/x").log_tail()
    assert text.startswith("(cannot read /x: exit status 1: tail: cannot open")


@pytest.mark.parametrize(("status", "alive"), [(0, True), (1, False), (255, None)])
def test_mha_alive_asks_proc_for_the_started_pid(status: int, alive: bool | None) -> None:
    shell = ScriptedShell({"test -d /proc/4242": (status, "", "")})
    assert mha_manager(shell).alive(4242) is alive
    assert shell.ran == ["test -d /proc/4242"]
