"""SSH over paramiko: run commands, verify host keys, hop through a bastion, forward ports.

The only module that imports paramiko. Everything paramiko or the socket layer raises
leaves as ``SshError`` / ``HostKeyError`` / ``CommandFailed`` naming the host and the action.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import structlog

from harestart.adapters.mysql import MysqlSession, PyMysqlCommands, PyMysqlReader
from harestart.adapters.protocols import CommandResult
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.errors import CommandFailed, HarestartError, HostKeyError, SshError

log = structlog.get_logger("harestart.ssh")

# paramiko's transport thread logs each failed handshake (a host whose sshd accepts and never
# sends its banner) with its traceback through the standard logging module, which without a
# handler prints it on stderr: a traceback in `status` and `run` output. The failure leaves
# this module as SshError, reported per host; the handler keeps paramiko's copy quiet.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_CHUNK = 32768
_KEEPALIVE_S = 15


def wrap_sudo(command: str) -> str:
    """``sudo -n`` (never prompt) around a shell running ``command`` verbatim."""
    return f"sudo -n -- sh -c {shlex.quote(command)}"


def known_hosts_path(endpoint: SshEndpoint) -> Path:
    return Path(endpoint.known_hosts or "~/.ssh/known_hosts").expanduser()


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts: ``[host]:port`` unless 22."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown hosts, or (opted in) record them in the known_hosts file.

    Changed keys never reach this policy: paramiko raises ``BadHostKeyException`` for them,
    which ``translate`` turns into a ``HostKeyError`` whatever ``accept_new`` says.
    """

    def __init__(self, name: str, path: Path, accept_new: bool) -> None:
        self.name = name
        self.path = path
        self.accept_new = accept_new

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.accept_new:
            raise HostKeyError(
                self.name,
                "verify host key",
                f"host key for {hostname} ({key.get_name()} {fingerprint(key)}) is not in "
                f"known_hosts {self.path}; add it (ssh-keyscan) or pass --accept-new-host-keys",
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as exc:
            raise HostKeyError(
                self.name, "record new host key", f"cannot write {self.path}: {exc.strerror}"
            ) from exc
        log.warning(
            "ssh.host_key_added",
            host=self.name,
            known_hosts_name=hostname,
            key_type=key.get_name(),
            fingerprint=fingerprint(key),
            known_hosts=str(self.path),
        )


# One flat branch per paramiko/socket failure, each with its own sentence for people: splitting
# the table would only hide which exception becomes which message.
# What paramiko says when the server accepted the TCP connection but never spoke SSH: no
# banner, or (its transport given up on) authentication asked of a session that never began.
_NO_HANDSHAKE = ("Error reading SSH protocol banner", "No existing session")


def translate(  # noqa: C901, PLR0912
    name: str, action: str, exc: BaseException, endpoint: SshEndpoint | None = None
) -> SshError:
    """A paramiko / socket exception as an ``SshError`` with a readable reason."""
    if isinstance(exc, SshError):
        return exc
    where = f"{endpoint.host}:{endpoint.port}" if endpoint else "the host"
    if isinstance(exc, paramiko.BadHostKeyException):
        hk = known_hosts_name(exc.hostname, endpoint.port) if endpoint else exc.hostname
        path = known_hosts_path(endpoint) if endpoint else "known_hosts"
        return HostKeyError(
            name,
            "verify host key",
            f"host key for {hk} does not match known_hosts {path} (server offered "
            f"{exc.key.get_name()} {fingerprint(exc.key)}, known "
            f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}): possible "
            f"man-in-the-middle; if the host was rebuilt, remove the old entry with "
            f"ssh-keygen -R '{hk}' -f {path} and verify the new key",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        key = endpoint.key_file if endpoint else "the key file"
        return SshError(name, action, f"{key} is encrypted; load it into an ssh agent instead")
    if isinstance(exc, paramiko.AuthenticationException):
        user = endpoint.user if endpoint else "?"
        how = []
        if endpoint and endpoint.key_file:
            how.append(f"key {endpoint.key_file}")
        if endpoint and endpoint.use_agent:
            how.append("ssh agent")
        tried = f" (tried {', '.join(how) or 'no key and no agent'})"
        return SshError(name, action, f"authentication failed for user {user}{tried}")
    if isinstance(exc, paramiko.ChannelException):
        return SshError(name, action, f"channel refused: {exc.text or exc.code}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        why = "host unreachable" if codes == {errno.EHOSTUNREACH} else "connection refused"
        return SshError(name, action, f"{why} ({where})")
    if isinstance(exc, TimeoutError | socket.timeout):
        limit = endpoint.connect_timeout if endpoint else None
        after = f" after {limit:g} s" if limit is not None else ""
        return SshError(name, action, f"timed out{after} ({where})")
    if isinstance(exc, socket.gaierror):
        return SshError(name, action, f"cannot resolve host name {where}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return SshError(name, action, f"connection refused ({where})")
    if isinstance(exc, paramiko.SSHException):
        return _protocol_error(name, action, exc, endpoint, where)
    if isinstance(exc, OSError):
        target = f" {exc.filename}" if exc.filename else f" ({where})"
        return SshError(name, action, f"{exc.strerror or exc}{target}")
    return SshError(name, action, f"{type(exc).__name__}: {exc}")


def _protocol_error(
    name: str, action: str, exc: paramiko.SSHException, endpoint: SshEndpoint | None, where: str
) -> SshError:
    """paramiko's other SSHExceptions, in the words of what went wrong."""
    if "No authentication methods available" in str(exc):
        user = endpoint.user if endpoint else "?"
        return SshError(
            name, action, f"authentication failed for user {user} (no key file and no agent)"
        )
    if any(s in str(exc) for s in _NO_HANDSHAKE):
        limit = endpoint.connect_timeout if endpoint else None
        within = f" within {limit:g} s" if limit is not None else ""
        return SshError(
            name,
            action,
            f"no SSH handshake{within} ({where}): the port accepts connections but sshd "
            "does not answer (host frozen or overloaded?)",
        )
    return SshError(name, action, f"SSH error: {exc}")


def _load_key(name: str, endpoint: SshEndpoint) -> paramiko.PKey | None:
    """Load the key file ourselves: paramiko's own loop over key types reports the last
    type it tried ("expected OPENSSH key") instead of the real authentication failure."""
    if not endpoint.key_file:
        return None
    path = Path(endpoint.key_file).expanduser()
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException as exc:
        raise SshError(
            name, "load key", f"key file {path} is encrypted; load it into an ssh agent instead"
        ) from exc
    except OSError as exc:
        raise SshError(name, "load key", f"cannot read key file {path}: {exc.strerror}") from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise SshError(name, "load key", f"cannot use key file {path}: {exc}") from exc


def _open_client(
    name: str, endpoint: SshEndpoint, sock: paramiko.Channel | None = None
) -> paramiko.SSHClient:
    """Connect and authenticate one SSH client with host key verification on."""
    pkey = _load_key(name, endpoint)
    client = paramiko.SSHClient()
    path = known_hosts_path(endpoint)
    try:
        if path.exists():
            client.load_host_keys(str(path))
        client.set_missing_host_key_policy(
            _KnownHostsPolicy(name, path, endpoint.accept_new_host_keys)
        )
        client.connect(
            endpoint.host,
            port=endpoint.port,
            username=endpoint.user,
            pkey=pkey,
            allow_agent=endpoint.use_agent,
            look_for_keys=False,
            timeout=endpoint.connect_timeout,
            banner_timeout=endpoint.connect_timeout,
            auth_timeout=endpoint.connect_timeout,
            channel_timeout=endpoint.connect_timeout,
            sock=sock,
        )
    except (paramiko.SSHException, OSError, HarestartError) as exc:
        client.close()
        raise translate(name, "connect", exc, endpoint) from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(_KEEPALIVE_S)
        if isinstance(transport.sock, socket.socket):
            # small request messages (exec, EOF) must not wait for delayed ACKs (Nagle)
            with contextlib.suppress(OSError):
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


class ParamikoShell:
    """``RemoteShell`` over one lazily opened, reused SSH connection (through ``jump`` if set)."""

    def __init__(self, name: str, endpoint: SshEndpoint) -> None:
        self._name = name
        self.endpoint = endpoint
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None
        self._tunnels: list[SshTunnel] = []
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"ParamikoShell({self._name!r}, {self.endpoint.describe()!r})"

    # -- connection ---------------------------------------------------------------------------

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (again) if there is none or it died."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            self._disconnect()
            self._connect()
            transport = self._client.get_transport() if self._client is not None else None
            if transport is None:  # pragma: no cover - paramiko sets it on connect
                raise SshError(self._name, "connect", "no transport after connecting")
            return transport

    def connect(self) -> None:
        """Open the connection now if it is not open (``SshError`` otherwise)."""
        self.transport()

    def _connect(self) -> None:
        ep = self.endpoint
        started = time.monotonic()
        sock: paramiko.Channel | None = None
        if ep.jump is not None:
            self._jump = _open_client(f"{self._name} (jump {ep.jump.host})", ep.jump)
            jump_transport = self._jump.get_transport()
            if jump_transport is None:  # pragma: no cover - paramiko sets it on connect
                raise SshError(self._name, "connect", f"no transport to jump host {ep.jump.host}")
            try:
                sock = jump_transport.open_channel(
                    "direct-tcpip",
                    (ep.host, ep.port),
                    ("127.0.0.1", 0),
                    timeout=ep.connect_timeout,
                )
            except (paramiko.SSHException, OSError) as exc:
                self._disconnect()
                reason = translate(self._name, "connect", exc, ep).reason
                raise SshError(
                    self._name,
                    f"connect via {ep.jump.host}",
                    f"jump host could not reach {ep.host}:{ep.port}: {reason}",
                ) from exc
        try:
            self._client = _open_client(self._name, ep, sock=sock)
        except SshError:
            self._disconnect()
            raise
        log.info(
            "ssh.connect",
            host=self._name,
            target=ep.describe(),
            duration_s=round(time.monotonic() - started, 3),
        )

    def _disconnect(self) -> None:
        for client in (self._client, self._jump):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._client = None
        self._jump = None

    def close(self) -> None:
        for tunnel in self._tunnels:
            tunnel.close()
        self._tunnels.clear()
        with self._lock:
            self._disconnect()

    # -- commands -----------------------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        use_sudo = self.endpoint.sudo if sudo is None else sudo
        limit = self.endpoint.command_timeout if timeout is None else timeout
        wire = wrap_sudo(command) if use_sudo else command
        action = f"run `{_short(command)}`"
        transport = self.transport()
        started = time.monotonic()
        try:
            channel = transport.open_session(timeout=self.endpoint.connect_timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise translate(self._name, action, exc, self.endpoint) from exc
        try:
            exit_status, out, err = _exec(channel, wire, limit)
        except TimeoutError as exc:
            raise SshError(
                self._name, action, f"timed out after {limit:g} s (it may still be running)"
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            raise translate(self._name, action, exc, self.endpoint) from exc
        finally:
            channel.close()
        result = CommandResult(
            command=command,
            exit_status=exit_status,
            stdout=out,
            stderr=err,
            duration_s=round(time.monotonic() - started, 3),
        )
        log.info(
            "ssh.command",
            host=self._name,
            command=command,
            sudo=use_sudo,
            exit_status=exit_status,
            duration_s=result.duration_s,
        )
        if check and exit_status != 0:
            raise CommandFailed(self._name, action, exit_status, err or out)
        return result

    # -- port forwarding ----------------------------------------------------------------------

    def forward(self, remote_host: str, remote_port: int) -> tuple[str, int]:
        """Listen on 127.0.0.1 (a free port) and forward to ``remote_host:remote_port`` as
        seen from this host. Returns the local address; closed with the shell."""
        self.transport()  # fail now, with a clear error, if the host is unreachable
        tunnel = SshTunnel(self._name, self.transport, remote_host, remote_port)
        self._tunnels.append(tunnel)
        return tunnel.local_address


def _exec(channel: paramiko.Channel, command: str, timeout: float) -> tuple[int, str, str]:
    """Run ``command`` on ``channel``; collect stdout/stderr until exit, or TimeoutError."""
    deadline = time.monotonic() + timeout
    channel.settimeout(timeout)
    channel.exec_command(command)
    channel.shutdown_write()  # no stdin: commands that read it see EOF instead of hanging
    out: list[bytes] = []
    err: list[bytes] = []
    while True:
        progressed = False
        while channel.recv_ready():
            out.append(channel.recv(_CHUNK))
            progressed = True
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(_CHUNK))
            progressed = True
        if channel.exit_status_ready() and channel.eof_received and not progressed:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if not progressed:
            select.select([channel], [], [], min(remaining, 0.5))
    status = channel.recv_exit_status()
    return (
        status,
        b"".join(out).decode("utf-8", errors="replace"),
        b"".join(err).decode("utf-8", errors="replace"),
    )


def _short(command: str, limit: int = 120) -> str:
    flat = " ".join(command.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class SshTunnel:
    """Local TCP port on 127.0.0.1 forwarded over SSH (``direct-tcpip``) to a remote address.

    ``transport`` is called for every new connection, so a reconnected shell keeps serving.
    """

    def __init__(
        self,
        name: str,
        transport: Callable[[], paramiko.Transport],
        remote_host: str,
        remote_port: int,
    ) -> None:
        self.name = name
        self.remote = (remote_host, remote_port)
        self._transport = transport
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.5)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name=f"ssh-tunnel-{name}-{remote_host}:{remote_port}", daemon=True
        )
        self._thread.start()

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listening socket closed
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        try:
            channel = self._transport().open_channel(
                "direct-tcpip", self.remote, conn.getpeername()[:2]
            )
        except (HarestartError, paramiko.SSHException, OSError) as exc:
            log.warning(
                "ssh.tunnel_failed",
                host=self.name,
                remote=f"{self.remote[0]}:{self.remote[1]}",
                reason=str(exc),
            )
            conn.close()
            return
        try:
            _shovel(conn, channel, self._closed)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.debug("ssh.tunnel_closed", host=self.name, reason=str(exc) or type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                channel.close()
            conn.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=2)


def _shovel(conn: socket.socket, channel: paramiko.Channel, closed: threading.Event) -> None:
    while not closed.is_set():
        waitables: list[socket.socket | paramiko.Channel] = [conn, channel]
        readable, _, _ = select.select(waitables, [], [], 0.5)
        if conn in readable:
            data = conn.recv(_CHUNK)
            if not data:
                return
            channel.sendall(data)
        if channel in readable:
            data = channel.recv(_CHUNK)
            if not data:
                return
            conn.sendall(data)


class ParamikoConnector:
    """``Connector`` with real adapters: one cached shell per (name, endpoint)."""

    def __init__(self) -> None:
        self._shells: dict[tuple[str, SshEndpoint], ParamikoShell] = {}
        self._sessions: dict[tuple[str, MysqlEndpoint], MysqlSession] = {}
        self._lock = threading.Lock()  # parallel steps ask for adapters at the same time

    def shell(self, name: str, endpoint: SshEndpoint) -> ParamikoShell:
        key = (name, endpoint)
        with self._lock:
            if key not in self._shells:
                self._shells[key] = ParamikoShell(name, endpoint)
            return self._shells[key]

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> PyMysqlReader:
        """The server's reader over its one session (one connection, reconnecting when
        needed), reused: a new connection per question costs tens of milliseconds on every
        poll."""
        return PyMysqlReader(self._session(name, endpoint))

    def commands(self, name: str, endpoint: MysqlEndpoint) -> PyMysqlCommands:
        """The server's commands, over the same session as its reader."""
        return PyMysqlCommands(self._session(name, endpoint))

    def _session(self, name: str, endpoint: MysqlEndpoint) -> MysqlSession:
        key = (name, endpoint)
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = MysqlSession(
                    name, endpoint, tunnel_factory=self._forwarder(name)
                )
            return self._sessions[key]

    def _forwarder(self, name: str) -> Callable[[SshEndpoint, str, int], tuple[str, int]]:
        def forward(via: SshEndpoint, host: str, port: int) -> tuple[str, int]:
            return self.shell(f"{name} (tunnel {via.host})", via).forward(host, port)

        return forward

    def close_all(self) -> None:
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                session.close()
        self._sessions.clear()
        for shell in self._shells.values():
            with contextlib.suppress(Exception):
                shell.close()
        self._shells.clear()


__all__ = [
    "ParamikoConnector",
    "ParamikoShell",
    "SshTunnel",
    "fingerprint",
    "known_hosts_name",
    "known_hosts_path",
    "translate",
    "wrap_sudo",
]
