"""Real lab clusters for integration tests: 1 source + N replicas + an MHA manager.

Two flavours (``start_cluster(flavor=...)``, ``LabCluster.flavor``): ``mariadb`` (MariaDB 10.11,
image ``harestart-lab:mariadb`` from lab/Dockerfile) and ``mysql`` (Oracle MySQL 9.7, image
``harestart-lab:mysql`` from lab/Dockerfile.mysql); ``lab/setup.sh image FLAVOR`` builds them and
lab/entrypoint.sh holds the environment contract. The helpers here hide the differences (client
name, replica status columns, GTID positions): ``replica_status()``, ``replicating()``,
``source_gtid()``/``applied()``/``wait_replicated()``, ``restart_command``.

Every cluster runs on its own Docker network (aliases db1, db2, ..., mha). Host-side code
reaches the containers only through 127.0.0.1 and published ports.

Bastion mode (``start_cluster(bastion=True)``): a fourth kind of container, ``bastion``
(sshd only, TCP forwarding on), is the only one that publishes a port (its SSH port, on
127.0.0.1). The group's nodes publish nothing; harestart reaches them as db1:22 / db1:3306
through the bastion (``write_inventory`` writes ``ssh.jump`` and ``mysql.tunnel``). The
fixture's own checks then go through ``docker exec`` instead of the network: ``sql()`` runs
the flavour's client (``mariadb`` or ``mysql``) as root on the node's local socket, and readiness checks each node's
sshd from inside the bastion (which proves the hop's network path too). The fixture never
uses harestart's own SSH code to look at a cluster it is testing.

Proxy mode (``start_cluster(proxy=True)``): an HAProxy container (``LAB_ROLE=proxy``, always
from the MariaDB image) in front of the group, ``cluster.proxy``: a writer frontend (backend
``writer``: every db node, only the source enabled), a reader frontend (backend ``readers``:
the replicas) and its runtime API (level admin), each published on 127.0.0.1
(``writer_port``, ``reader_port``, ``api_port``; ``api`` is the ``HAPROXY_API`` value for
lab/hooks/haproxy_hook.py). It is stopped with the cluster.

Containers and networks carry the labels ``harestart.lab=test``, ``harestart.lab.session``
and ``harestart.lab.pid`` so a sweep can remove what a session (or a dead one) left behind.
"""

from __future__ import annotations

import atexit
import os

# Before testcontainers is imported (it reads these at import time):
# - the reaper image cannot be pulled here; we clean up ourselves (labels + sweep);
# - this machine has /.dockerenv, so testcontainers would hand out the bridge gateway address;
#   host-side traffic must use 127.0.0.1 and the published ports.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"
os.environ["TESTCONTAINERS_HOST_OVERRIDE"] = "127.0.0.1"

import contextlib
import functools
import re
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar

import docker  # type: ignore[import-untyped]
import pymysql
import pymysql.converters
import pymysql.cursors
import pytest
import yaml
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SH = REPO_ROOT / "lab" / "setup.sh"
ARTIFACTS_DIR = REPO_ROOT / "tests" / ".artifacts"

Flavor = Literal["mariadb", "mysql"]
FLAVORS: tuple[Flavor, ...] = ("mariadb", "mysql")
DEFAULT_FLAVOR: Flavor = "mariadb"
# How an operator restarts mysqld on a lab host (a sysvinit script in both images).
RESTART_COMMANDS: dict[Flavor, str] = {
    "mariadb": "service mariadb restart",
    "mysql": "service mysql restart",
}
# The command-line client in each image (`mysql` in the MariaDB image is only a compat link).
CLIENTS: dict[Flavor, str] = {"mariadb": "mariadb", "mysql": "mysql"}
HOST = "127.0.0.1"
MHA_CONF = "/etc/mha/app1.cnf"
MHA_START = "/usr/local/bin/lab-mha-start"
ADMIN_USER = "harestart"

LABEL = "harestart.lab"
LABEL_SESSION = "harestart.lab.session"
LABEL_PID = "harestart.lab.pid"
SESSION_ID = uuid.uuid4().hex[:12]

# Generous deadlines: several clusters may share two cores.
START_TIMEOUT = float(os.environ.get("LAB_START_TIMEOUT", "240"))
# A command run in a container (docker_exec) that has not ended by then is a hang, not a wait.
EXEC_TIMEOUT = 600.0

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def wait_for(
    description: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = 120.0,
    interval: float = 0.5,
) -> T:
    """Poll ``probe`` until it returns a truthy value (returned) or ``timeout`` expires.

    Exceptions from the probe count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {description} (last: {last!r})"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container left: its exit code, stdout and stderr (text)."""

    code: int
    stdout: str
    stderr: str


def docker_exec(
    container: str, argv: Sequence[str], *, timeout: float = EXEC_TIMEOUT
) -> ExecResult:
    """Run ``argv`` in ``container`` (an id or name) as root: the lab's one way to run a
    command in a container, for every test, fixture, bench and lab script.

    It goes through the ``docker exec`` command line, which reads both streams to their end
    before it exits, never through docker-py's exec API: under load that one sometimes returns
    no output at all for a short command (docker/docker-py #2042, #3332), and a fixture
    reading that empty answer failed a whole module (tests/unit/test_suite_rules.py keeps that
    API out of tests/, bench/ and lab/). ``timeout`` bounds the command; past it the
    client is killed and ``TimeoutError`` names the command."""
    cmd = ["docker", "exec", container, *argv]
    try:
        done = subprocess.run(
            cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(
            f"docker exec {container[:12]} {' '.join(argv)!r}: no end after {timeout:.0f} s"
        ) from exc
    return ExecResult(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


def _random_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(24))


def _write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:150]


# --------------------------------------------------------------------------- image + keys


def check_flavor(flavor: str) -> Flavor:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown lab flavour {flavor!r} (expected one of {FLAVORS})")
    return flavor


def lab_image(flavor: str = DEFAULT_FLAVOR) -> str:
    """The image tag of a flavour: ``harestart-lab:mariadb`` or ``harestart-lab:mysql``."""
    return f"harestart-lab:{check_flavor(flavor)}"


# lab/setup.sh steps done by this process: "docker", "image mariadb", "image mysql".
_setup_done: set[str] = set()


def _setup(*args: str) -> None:
    """Run ``lab/setup.sh ARGS`` once per process; fail the test (never skip) if it fails."""
    step = " ".join(args)
    if step in _setup_done:
        return
    proc = subprocess.run(
        ["bash", str(SETUP_SH), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"lab/setup.sh {step} exited {proc.returncode}"
        pytest.fail(f"lab unavailable: {reason}", pytrace=False)
    _setup_done.add(step)


def ensure_docker() -> None:
    """Make sure a Docker engine answers (once per session)."""
    _setup("docker")


def ensure_lab_image(flavor: str = DEFAULT_FLAVOR) -> str:
    """Make sure Docker answers and the flavour's image is built (once per flavour per session);
    returns its tag. Only the flavour asked for is built.

    Without Docker the test run fails with lab/setup.sh's one-line reason: integration tests
    are never skipped.
    """
    image = lab_image(flavor)
    ensure_docker()
    _setup("image", flavor)
    return image


_session_dir: Path | None = None


def session_dir() -> Path:
    """A private temp dir for this process (keys, known_hosts, inventories); removed at exit."""
    global _session_dir  # noqa: PLW0603 - once-per-process memo
    if _session_dir is None:
        _session_dir = Path(tempfile.mkdtemp(prefix="harestart-lab-"))
        atexit.register(shutil.rmtree, _session_dir, True)
    return _session_dir


@dataclass(frozen=True)
class LabKeys:
    """SSH material shared by the clusters of one session (mounted at /lab/keys)."""

    dir: Path
    client_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    # The bastion's /lab/keys: the client's public key and the host key, no private client key
    # (a jump host only forwards; it never logs in anywhere itself).
    bastion_dir: Path


_keys: LabKeys | None = None


def session_keys() -> LabKeys:
    global _keys  # noqa: PLW0603 - once-per-process memo
    if _keys is None:
        keys_dir = session_dir() / "keys"
        keys_dir.mkdir(mode=0o700)
        for name, comment in (
            ("id_ed25519", "harestart-lab-client"),
            ("ssh_host_ed25519_key", "harestart-lab-host"),
        ):
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    comment,
                    "-f",
                    str(keys_dir / name),
                ],
                check=True,
                capture_output=True,
            )
        host_pub = (keys_dir / "ssh_host_ed25519_key.pub").read_text().split()
        bastion_dir = session_dir() / "bastion-keys"
        bastion_dir.mkdir(mode=0o700)
        for name in ("id_ed25519.pub", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
            shutil.copy2(keys_dir / name, bastion_dir / name)
        _keys = LabKeys(
            dir=keys_dir,
            client_key=keys_dir / "id_ed25519",
            host_public_key=f"{host_pub[0]} {host_pub[1]}",
            bastion_dir=bastion_dir,
        )
    return _keys


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True, eq=False)
class LabNode:
    """One container. ``address``/``ports`` are where harestart reaches it: 127.0.0.1 and the
    published ports, or (``published`` False, bastion mode) its network name and 22/3306 as
    seen from the bastion."""

    name: str  # hostname / network alias: db1, db2, ..., mha, bastion
    role: str  # source | replica | manager | bastion
    server_id: int | None  # None for the manager and the bastion
    ssh_port: int  # on 127.0.0.1, or 22 when not published
    mysql_port: int | None  # on 127.0.0.1, or 3306 when not published; None without MySQL
    container: DockerContainer = field(repr=False)
    address: str = HOST
    published: bool = True

    @property
    def container_id(self) -> str:
        return str(self.container.get_container_id())


PROXY_API_PORT = 9999  # HAProxy's runtime API in the proxy container (lab/entrypoint.sh)


@dataclass(frozen=True, eq=False)
class LabProxy:
    """The lab's HAProxy: writer/reader frontends and the runtime API on 127.0.0.1."""

    writer_port: int
    reader_port: int
    api_port: int
    container: DockerContainer = field(repr=False)
    name: str = "proxy"

    @property
    def api(self) -> str:
        """``host:port`` of the runtime API (the hook scripts' ``HAPROXY_API``)."""
        return f"{HOST}:{self.api_port}"

    def command(self, command: str) -> str:
        """One runtime API request (e.g. ``show stat``); the answer as text."""
        with socket.create_connection((HOST, self.api_port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[tuple[str, str], dict[str, str]]:
        """``show stat`` server lines: {(backend, server): row}, row keys as HAProxy names them
        (``status``, ``scur``, ...)."""
        lines = [ln for ln in self.command("show stat").splitlines() if ln.strip()]
        if not lines or not lines[0].startswith("# "):
            raise RuntimeError(f"unexpected 'show stat' answer: {lines[:2]!r}")
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, ln.split(","), strict=False)) for ln in lines[1:]]
        return {
            (r["pxname"], r["svname"]): r
            for r in rows
            if r.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def status(self, backend: str, server: str) -> str:
        """A server's ``show stat`` status: UP, DOWN, DRAIN, MAINT, "UP 1/2", ..."""
        return self.servers()[(backend, server)]["status"]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.container.stop(force=True, delete_volume=True)


@dataclass(frozen=True, eq=False)
class LabCluster:
    """A running lab group. Ports are docker-assigned: restart mysqld (``restart_command``
    over SSH), never the containers themselves, or the published ports change."""

    name: str
    source: LabNode
    replicas: tuple[LabNode, ...]
    manager: LabNode
    network: Network = field(repr=False)
    admin_user: str
    admin_password: str = field(repr=False)
    repl_password: str = field(repr=False)
    mha_password: str = field(repr=False)
    key_file: Path
    known_hosts: Path
    password_file: Path  # the admin password alone, no newline
    workdir: Path
    connect_retry: int | None = None
    mha_config: str = MHA_CONF
    restart_command: str = ""  # "": the flavour's (RESTART_COMMANDS)
    bastion: LabNode | None = None  # the jump host; then the group's nodes publish nothing
    flavor: Flavor = DEFAULT_FLAVOR
    proxy: LabProxy | None = None  # HAProxy in front of the group (start_cluster(proxy=True))

    def __post_init__(self) -> None:
        check_flavor(self.flavor)
        if not self.restart_command:
            object.__setattr__(self, "restart_command", RESTART_COMMANDS[self.flavor])

    @property
    def client(self) -> str:
        """The command-line client in this cluster's containers: ``mariadb`` or ``mysql``."""
        return CLIENTS[self.flavor]

    @property
    def service(self) -> str:
        """The sysvinit service that runs mysqld: ``mariadb`` or ``mysql`` (lab/mysql.init)."""
        return "mysql" if self.flavor == "mysql" else "mariadb"

    @property
    def config_dir(self) -> str:
        """Where the server reads its config snippets (the lab's own is 60-lab.cnf there)."""
        return "/etc/mysql/conf.d" if self.flavor == "mysql" else "/etc/mysql/mariadb.conf.d"

    @property
    def replica_status_statement(self) -> str:
        """``SHOW SLAVE STATUS`` (MariaDB) or ``SHOW REPLICA STATUS`` (MySQL 8.4+ has no other)."""
        return "SHOW REPLICA STATUS" if self.flavor == "mysql" else "SHOW SLAVE STATUS"

    @property
    def _replica_word(self) -> str:
        # MySQL 8.4 removed START/STOP SLAVE; MariaDB 10.11 knows both, its docs say SLAVE.
        return "REPLICA" if self.flavor == "mysql" else "SLAVE"

    # ---- lookup

    @property
    def db_nodes(self) -> tuple[LabNode, ...]:
        return (self.source, *self.replicas)

    @property
    def nodes(self) -> tuple[LabNode, ...]:
        return (*self.db_nodes, self.manager)

    @property
    def containers(self) -> tuple[LabNode, ...]:
        """Every container of the cluster: the group's nodes and the bastion, if any."""
        return self.nodes if self.bastion is None else (*self.nodes, self.bastion)

    @property
    def manager_ssh_port(self) -> int:
        return self.manager.ssh_port

    def node(self, node: str | LabNode) -> LabNode:
        if isinstance(node, LabNode):
            return node
        for candidate in self.containers:
            if candidate.name == node:
                return candidate
        raise KeyError(f"no node {node!r} in cluster {self.name} ({[n.name for n in self.nodes]})")

    # ---- access

    def exec(
        self, node: str | LabNode, cmd: str | Sequence[str], *, timeout: float = EXEC_TIMEOUT
    ) -> tuple[int, str]:
        """Run a command in the node's container (``docker_exec``, as root); (exit code,
        stdout followed by stderr)."""
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        result = docker_exec(self.node(node).container_id, argv, timeout=timeout)
        return result.code, result.stdout + result.stderr

    def connect(self, node: str | LabNode, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        """A pymysql connection as the admin user through 127.0.0.1 and the published port."""
        n = self.node(node)
        if n.mysql_port is None:
            raise ValueError(f"{n.name} runs no MySQL")
        if not n.published:
            raise ValueError(f"{n.name} publishes no port (bastion mode): use sql()")
        params: dict[str, Any] = {
            "host": HOST,
            "port": n.mysql_port,
            "user": self.admin_user,
            "password": self.admin_password,
            "connect_timeout": 5,
            "read_timeout": 30,
            "write_timeout": 30,
            "autocommit": True,
            "cursorclass": pymysql.cursors.DictCursor,
        }
        params.update(kwargs)
        return pymysql.connect(**params)

    def sql(self, node: str | LabNode, query: str, args: Any = None) -> list[dict[str, Any]]:
        """Run one statement as the admin user; rows as dicts (empty for statements).

        In bastion mode (nothing published) the statement runs through ``docker exec`` as root
        on the local socket instead, and every value comes back as text (None for NULL).
        """
        n = self.node(node)
        if not n.published:
            return self._sql_exec(n, query, args)
        conn = self.connect(n)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def _sql_exec(self, n: LabNode, query: str, args: Any) -> list[dict[str, Any]]:
        if n.mysql_port is None:
            raise ValueError(f"{n.name} runs no MySQL")
        if args is not None:
            escape = pymysql.converters.escape_item
            if isinstance(args, dict):
                query = query % {k: escape(v, "utf8mb4") for k, v in args.items()}
            else:
                query = query % tuple(escape(v, "utf8mb4") for v in args)
        argv = [self.client, "--protocol=socket", "-uroot", "--batch", "-e", query]
        result = docker_exec(n.container_id, argv)
        if result.code != 0:
            raise RuntimeError(
                f"{n.name}: {self.client} exited {result.code}: {result.stderr or result.stdout}"
            )
        lines = result.stdout.splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, map(_unbatch, ln.split("\t")), strict=True)) for ln in lines[1:]]

    def replica_status(self, node: str | LabNode) -> ReplicaStatus:
        """The node's replica status in flavour-neutral names (values None when the node is not
        a replica); ``raw`` is the row as the server returned it."""
        rows = self.sql(node, self.replica_status_statement)
        raw = rows[0] if rows else {}
        # MariaDB keeps the Master_/Slave_ column names; MySQL 8.0.22+ says Source_/Replica_.
        old = self.flavor == "mariadb"
        retry = raw.get("Connect_Retry")
        return {
            "io_running": raw.get("Slave_IO_Running" if old else "Replica_IO_Running"),
            "sql_running": raw.get("Slave_SQL_Running" if old else "Replica_SQL_Running"),
            "source_host": raw.get("Master_Host" if old else "Source_Host"),
            "seconds_behind": raw.get("Seconds_Behind_Master" if old else "Seconds_Behind_Source"),
            "connect_retry": None if retry is None else int(retry),
            # MariaDB: Using_Gtid No/Slave_Pos/Current_Pos; MySQL: Auto_Position 0/1.
            "auto_position": (
                raw.get("Using_Gtid") not in (None, "No")
                if old
                else str(raw.get("Auto_Position")) == "1"
            ),
            "last_io_error": raw.get("Last_IO_Error"),
            "last_sql_error": raw.get("Last_SQL_Error"),
            "raw": raw,
        }

    def slave_status(self, node: str | LabNode) -> dict[str, Any]:
        """The raw replica status row (MariaDB's Slave_* / MySQL's Replica_* columns); {} if none.

        Kept for existing MariaDB tests; new code reads ``replica_status()``."""
        return self.replica_status(node)["raw"]

    def replicating(self, node: str | LabNode) -> bool:
        """Whether both replication threads of ``node`` run."""
        st = self.replica_status(node)
        return st["io_running"] == "Yes" and st["sql_running"] == "Yes"

    def mha_status(self) -> tuple[int, str]:
        """``masterha_check_status`` in the manager: (exit code, output)."""
        return self.exec(self.manager, ["masterha_check_status", f"--conf={self.mha_config}"])

    def wait_mha(self, state: str = "PING_OK", *, timeout: float = 120.0) -> str:
        """Poll masterha_check_status until its output contains ``state``; returns the output."""

        def probe() -> str | None:
            _, out = self.mha_status()
            return out if state in out else None

        return wait_for(f"MHA {state} in {self.name}", probe, timeout=timeout, interval=1.0)

    def start_mha(self) -> None:
        """Start the MHA manager detached (the lab's one start command)."""
        code, out = self.exec(self.manager, [MHA_START])
        if code != 0:
            raise RuntimeError(f"{MHA_START} failed ({code}): {out}")

    def source_gtid(self, node: str | LabNode | None = None) -> str:
        """What the source (or ``node`` as a source) has written: MariaDB ``@@gtid_binlog_pos``,
        MySQL ``@@global.gtid_executed`` (newlines of multi-UUID sets removed)."""
        var = "@@global.gtid_executed" if self.flavor == "mysql" else "@@global.gtid_binlog_pos"
        pos = self.sql(self.source if node is None else node, f"SELECT {var} AS pos")[0]["pos"]
        return str(pos or "").replace("\n", "")

    def applied(self, node: str | LabNode, target: str) -> bool:
        """Whether ``node`` has applied ``target`` (a ``source_gtid()`` value): MariaDB
        ``@@gtid_slave_pos`` equals it; MySQL ``GTID_SUBSET(target, @@gtid_executed)``."""
        if self.flavor == "mysql":
            rows = self.sql(node, "SELECT GTID_SUBSET(%s, @@global.gtid_executed) AS ok", (target,))
            return str(rows[0]["ok"]) == "1"
        return str(self.sql(node, "SELECT @@global.gtid_slave_pos AS pos")[0]["pos"]) == target

    def wait_replicated(self, *, timeout: float = 120.0) -> str:
        """Wait until every replica runs both threads and has applied the source's GTID position."""
        target = self.source_gtid()

        def probe() -> bool:
            return all(self.replicating(r) and self.applied(r, target) for r in self.replicas)

        wait_for(f"replicas at GTID {target}", probe, timeout=timeout)
        return target

    # ---- changing a node (tests that break things on purpose)

    def stop_replication(self, node: str | LabNode) -> None:
        """``STOP SLAVE`` / ``STOP REPLICA`` on ``node`` (both threads)."""
        self.sql(node, f"STOP {self._replica_word}")

    def start_replication(self, node: str | LabNode) -> None:
        """``START SLAVE`` / ``START REPLICA`` on ``node``."""
        self.sql(node, f"START {self._replica_word}")

    def set_delay(self, node: str | LabNode, seconds: int) -> None:
        """Delayed replication on ``node``: it applies events ``seconds`` after they were written
        (``MASTER_DELAY`` / ``SOURCE_DELAY``); replication is stopped and started around it."""
        word = "SOURCE" if self.flavor == "mysql" else "MASTER"
        change = "CHANGE REPLICATION SOURCE TO" if self.flavor == "mysql" else "CHANGE MASTER TO"
        self.stop_replication(node)
        self.sql(node, f"{change} {word}_DELAY = {int(seconds)}")
        self.start_replication(node)

    def repoint(
        self, node: str | LabNode, source: str | LabNode, password: str | None = None
    ) -> None:
        """Make ``node`` replicate from ``source`` (GTID positioning, the lab's repl user with
        its password, or ``password`` when the test changed it)."""
        host = self.node(source).name
        self.stop_replication(node)
        if self.flavor == "mysql":
            change = (
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_USER='repl', "
                "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1"
            )
        else:
            change = (
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_USER='repl', MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos"
            )
        self.sql(node, change, (host, self.repl_password if password is None else password))
        self.start_replication(node)

    def read_only_state(self, node: str | LabNode) -> tuple[bool, bool | None]:
        """(read_only, super_read_only); super_read_only is None on MariaDB, which has none."""
        if self.flavor == "mysql":
            row = self.sql(node, "SELECT @@global.read_only AS ro, @@global.super_read_only AS sro")
            return (str(row[0]["ro"]) == "1", str(row[0]["sro"]) == "1")
        row = self.sql(node, "SELECT @@global.read_only AS ro")
        return (str(row[0]["ro"]) == "1", None)

    def local_sql(self, node: str | LabNode, query: str, args: Any = None) -> list[dict[str, Any]]:
        """Run a statement on ``node`` alone: as root on its socket, not binlogged
        (``sql_log_bin = 0``), so it never replicates - e.g. a row only a replica has.

        A MySQL replica runs with super_read_only, which stops even root: it is switched off
        for the statement and back on afterwards (MariaDB's read_only does not stop root)."""
        n = self.node(node)
        super_read_only = self.read_only_state(n)[1]
        if super_read_only:
            self._sql_exec(n, "SET GLOBAL super_read_only = OFF", None)
        try:
            return self._sql_exec(n, f"SET SESSION sql_log_bin = 0; {query}", args)
        finally:
            if super_read_only:
                self._sql_exec(n, "SET GLOBAL super_read_only = ON", None)

    def break_config(self, node: str | LabNode) -> None:
        """mysqld on ``node`` will refuse to start (an unknown option in its config) until
        ``fix_config``; the running server is not touched."""
        path = f"{self.config_dir}/99-broken.cnf"
        code, out = self.exec(
            node, ["sh", "-c", f"printf '[mysqld]\\nno_such_option=1\\n' > {path}"]
        )
        if code != 0:
            raise RuntimeError(f"{self.node(node).name}: could not write {path}: {out}")

    def fix_config(self, node: str | LabNode) -> None:
        """Undo ``break_config``."""
        self.exec(node, ["rm", "-f", f"{self.config_dir}/99-broken.cnf"])

    # ---- files for harestart

    def write_inventory(
        self,
        path: str | os.PathLike[str],
        *,
        group_id: str = "lab",
        account: str = "100001",
        restart_command: str | None = None,
        via_bastion: bool | None = None,
        **health: Any,
    ) -> Path:
        """Write an inventory YAML (harestart's draft format) for this cluster; returns its path.

        ``via_bastion`` (default: whether the cluster has a bastion) addresses the nodes by
        their network names on 22/3306 with ``defaults.ssh.jump`` = the bastion's published
        SSH port and ``defaults.mysql.tunnel: true``.
        Extra keyword arguments override or add ``defaults.health`` values (e.g. max_lag=2).
        """
        if via_bastion is None:
            via_bastion = self.bastion is not None
        if via_bastion and self.bastion is None:
            raise ValueError(f"cluster {self.name} was started without a bastion")
        if not via_bastion and self.bastion is not None:
            raise ValueError(f"cluster {self.name} publishes no node ports: use via_bastion")
        health_values: dict[str, Any] = {
            "max_lag": 5,
            "restart_timeout": 120,
            "catchup_timeout": 120,
            "failover_timeout": 60,
        }
        health_values.update(health)

        def db(node: LabNode) -> dict[str, Any]:
            return {
                "name": node.name,
                "address": node.address,
                "ssh": {"port": node.ssh_port},
                "mysql": {"port": node.mysql_port},
            }

        ssh: dict[str, Any] = {
            "user": "ops",
            "key_file": str(self.key_file.resolve()),
            "known_hosts": str(self.known_hosts.resolve()),
            "agent": False,
            "sudo": True,
        }
        mysql: dict[str, Any] = {
            "user": self.admin_user,
            "password_file": str(self.password_file.resolve()),
        }
        if via_bastion:
            assert self.bastion is not None
            ssh["jump"] = {"host": HOST, "port": self.bastion.ssh_port, "user": "ops"}
            mysql["tunnel"] = True

        doc = {
            "defaults": {
                "ssh": ssh,
                "mysql": mysql,
                "restart_command": restart_command or self.restart_command,
                "health": health_values,
            },
            "groups": [
                {
                    "id": group_id,
                    "account": str(account),
                    "source": db(self.source),
                    "replicas": [db(r) for r in self.replicas],
                    "mha": {
                        "manager": {
                            "name": self.manager.name,
                            "address": self.manager.address,
                            "ssh": {"port": self.manager.ssh_port},
                        },
                        "config": self.mha_config,
                    },
                }
            ],
        }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
        return out

    # ---- diagnostics + teardown

    def save_logs(self, dest: str | os.PathLike[str]) -> Path:
        """Keep container logs, the MHA manager log and the mysqld error logs under ``dest``."""
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for node in self.containers:
            try:
                logs = node.container.get_wrapped_container().logs(timestamps=True)
                (out / f"{node.name}.container.log").write_bytes(logs)
            except Exception as exc:
                (out / f"{node.name}.container.log").write_text(f"could not read logs: {exc}\n")
            files = {
                "manager": ["/var/log/mha/app1/manager.log"],
                "bastion": [],
            }.get(node.role, ["/var/log/mysql/error.log"])
            for remote in files:
                with contextlib.suppress(Exception):
                    _, text = self.exec(node, ["cat", remote])
                    (out / f"{node.name}.{Path(remote).name}").write_text(text)
            if node.role == "replica":
                with contextlib.suppress(Exception):
                    # -E, not \\G: MySQL 9's client refuses backslash commands in batch mode.
                    argv = [self.client, "-E", "-e", self.replica_status_statement]
                    _, text = self.exec(node, argv)
                    (out / f"{node.name}.replica-status.txt").write_text(text)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                logs = self.proxy.container.get_wrapped_container().logs(timestamps=True)
                (out / "proxy.container.log").write_bytes(logs)
        return out

    def stop(self) -> None:
        """Remove the containers and the network (best effort, idempotent)."""
        if self.proxy is not None:
            self.proxy.stop()
        for node in reversed(self.containers):
            with contextlib.suppress(Exception):
                node.container.stop(force=True, delete_volume=True)
        with contextlib.suppress(Exception):
            self.network.remove()


class ReplicaStatus(TypedDict):
    """``LabCluster.replica_status()``: the same names on both flavours."""

    io_running: str | None  # "Yes" | "No" | "Connecting" | None (not a replica)
    sql_running: str | None
    source_host: str | None
    seconds_behind: Any  # int, or None while a thread is stopped (text in bastion mode)
    connect_retry: int | None
    auto_position: bool  # GTID auto-positioning (MariaDB: Using_Gtid != No)
    last_io_error: str | None
    last_sql_error: str | None
    raw: dict[str, Any]  # the server's own row: Slave_*/Master_* or Replica_*/Source_* columns


_BATCH_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\", "\\0": "\0"}


def _unbatch(value: str) -> str | None:
    """A value as ``mariadb --batch`` / ``mysql --batch`` prints it: NULL, or text with \\n \\t \\\\ \\0 escaped."""
    if value == "NULL":
        return None
    return re.sub(r"\\[nt0\\]", lambda m: _BATCH_ESCAPES[m.group(0)], value)


def _labels() -> dict[str, str]:
    return {LABEL: "test", LABEL_SESSION: SESSION_ID, LABEL_PID: str(os.getpid())}


def _published(container: DockerContainer, port: int) -> int:
    api = container.get_docker_client().client.api
    mappings = api.port(container.get_container_id(), port) or []
    for m in mappings:
        if m.get("HostIp") in (HOST, "", "0.0.0.0"):  # noqa: S104 - reading docker's answer
            return int(m["HostPort"])
    raise RuntimeError(
        f"port {port} of {container.get_container_id()[:12]} is not published: {mappings}"
    )


def _ssh_banner(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=3) as s:
        s.settimeout(5)
        return s.recv(64).startswith(b"SSH-")


def _ssh_banner_via(bastion: LabNode, host: str, port: int = 22) -> bool:
    """Whether ``host:port`` answers with an SSH banner as seen from inside the bastion."""
    probe = f"exec 3<>/dev/tcp/{host}/{port} && head -c 4 <&3"
    result = docker_exec(bastion.container_id, ["timeout", "5", "bash", "-c", probe])
    return result.code == 0 and result.stdout.startswith("SSH-")


# Builds every container of a cluster in order (network, nodes, bastion, MHA, readiness) and
# tears it all down on any failure: one sequence that reads top to bottom.
def start_cluster(  # noqa: C901
    replicas: int = 2,
    *,
    connect_retry: int | None = None,
    name: str | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    timeout: float = START_TIMEOUT,
    bastion: bool = False,
    flavor: str = DEFAULT_FLAVOR,
    proxy: bool = False,
) -> LabCluster:
    """Start 1 source + ``replicas`` replicas + the MHA manager on a new network and wait until
    the group is really up: MySQL answers on every published port, every replica runs both
    replication threads, and masterha_check_status reports PING_OK.

    ``flavor``: ``mariadb`` or ``mysql`` (see the module docstring); only its image is built.

    ``bastion``: also start a ``bastion`` container (the SSH jump host), the only one that
    publishes a port; the group's nodes publish nothing (see the module docstring).

    ``proxy``: also start HAProxy in front of the group (``cluster.proxy``, see the module
    docstring), once the group is up; ready when every enabled server is UP.

    On a start-up failure the logs go to ``artifacts`` (if given) and everything is removed.
    """
    if replicas < 1:
        raise ValueError("a lab cluster needs at least one replica (MHA refuses to run without)")
    flavor = check_flavor(flavor)
    image = ensure_lab_image(flavor)
    keys = session_keys()
    name = name or f"lab-{flavor}-{uuid.uuid4().hex[:6]}"
    workdir = session_dir() / name
    workdir.mkdir(parents=True, exist_ok=False)

    admin_password = _random_password()
    repl_password = _random_password()
    mha_password = _random_password()
    secrets_env = {
        "LAB_ADMIN_USER": ADMIN_USER,
        "LAB_ADMIN_PASSWORD": admin_password,
        "LAB_REPL_PASSWORD": repl_password,
        "LAB_MHA_PASSWORD": mha_password,
    }
    replica_names = [f"db{i}" for i in range(2, replicas + 2)]

    network = Network(docker_network_kw={"labels": _labels(), "driver": "bridge"})
    network.name = f"harestart-{name}-{SESSION_ID}"
    network.create()

    containers: dict[str, DockerContainer] = {}

    def make(alias: str, env: dict[str, str], db: bool) -> DockerContainer:
        jump_host = alias == "bastion"
        c = DockerContainer(image)
        for key, value in {**(env if jump_host else {**secrets_env, **env})}.items():
            c.with_env(key, value)
        c.with_volume_mapping(str(keys.bastion_dir if jump_host else keys.dir), "/lab/keys", "ro")
        c.with_network(network).with_network_aliases(alias)
        # Published on 127.0.0.1 only, on ports docker picks; with a bastion, only its SSH port.
        if jump_host or not bastion:
            c.ports["22/tcp"] = (HOST, None)  # type: ignore[assignment]
        if db and not bastion:
            c.ports["3306/tcp"] = (HOST, None)  # type: ignore[assignment]
        c.with_name(f"harestart-{name}-{SESSION_ID}-{alias}")
        c.with_kwargs(
            hostname=alias,
            labels={**_labels(), "harestart.lab.cluster": name, "harestart.lab.flavor": flavor},
            # Root on a real host may read any process's /proc/<pid>/exe and maps (harestart's
            # pending-restart detection does, through sudo); Docker drops that capability.
            cap_add=["SYS_PTRACE"],
        )
        containers[alias] = c
        c.start()
        return c

    def cleanup() -> None:
        for c in containers.values():
            with contextlib.suppress(Exception):
                c.stop(force=True, delete_volume=True)
        with contextlib.suppress(Exception):
            network.remove()

    cluster: LabCluster | None = None
    try:
        retry_env = {} if connect_retry is None else {"LAB_CONNECT_RETRY": str(connect_retry)}
        make("db1", {"LAB_ROLE": "source", "LAB_SERVER_ID": "1"}, db=True)
        for i, alias in enumerate(replica_names, start=2):
            make(
                alias,
                {"LAB_ROLE": "replica", "LAB_SERVER_ID": str(i), "LAB_SOURCE": "db1", **retry_env},
                db=True,
            )
        make(
            "mha",
            {"LAB_ROLE": "manager", "LAB_SOURCE": "db1", "LAB_REPLICAS": " ".join(replica_names)},
            db=False,
        )
        if bastion:
            make("bastion", {"LAB_ROLE": "bastion"}, db=False)

        def node(alias: str, role: str, server_id: int | None) -> LabNode:
            c = containers[alias]
            has_mysql = role in ("source", "replica")
            if bastion and role != "bastion":
                # Addressed as seen from the bastion: network name and the real ports.
                return LabNode(
                    name=alias,
                    role=role,
                    server_id=server_id,
                    ssh_port=22,
                    mysql_port=3306 if has_mysql else None,
                    container=c,
                    address=alias,
                    published=False,
                )
            return LabNode(
                name=alias,
                role=role,
                server_id=server_id,
                ssh_port=_published(c, 22),
                mysql_port=_published(c, 3306) if has_mysql else None,
                container=c,
            )

        source = node("db1", "source", 1)
        replica_nodes = tuple(node(a, "replica", i) for i, a in enumerate(replica_names, start=2))
        manager = node("mha", "manager", None)
        jump = node("bastion", "bastion", None) if bastion else None

        # known_hosts names as OpenSSH writes them: [host]:port, or the plain host for port 22.
        known_hosts = workdir / "known_hosts"
        _write_private(
            known_hosts,
            "".join(
                f"{n.address if n.ssh_port == 22 else f'[{n.address}]:{n.ssh_port}'} "
                f"{keys.host_public_key}\n"
                for n in (source, *replica_nodes, manager, *([jump] if jump else []))
            ),
        )
        password_file = _write_private(workdir / "mysql_password", admin_password)

        cluster = LabCluster(
            name=name,
            source=source,
            replicas=replica_nodes,
            manager=manager,
            network=network,
            admin_user=ADMIN_USER,
            admin_password=admin_password,
            repl_password=repl_password,
            mha_password=mha_password,
            key_file=keys.client_key,
            known_hosts=known_hosts,
            password_file=password_file,
            workdir=workdir,
            connect_retry=connect_retry,
            bastion=jump,
            flavor=flavor,
        )
        _wait_ready(cluster, timeout)
        if proxy:
            # The proxy container is part of the cluster from here on: cleanup() and stop().
            cluster = _start_proxy(cluster, containers, timeout)
        return cluster
    except BaseException:
        if artifacts is not None and cluster is not None:
            with contextlib.suppress(Exception):
                cluster.save_logs(Path(artifacts) / f"{name}-startup")
            if "proxy" in containers and cluster.proxy is None:  # it failed to come up
                with contextlib.suppress(Exception):
                    _save_raw_logs(
                        {"proxy": containers["proxy"]}, Path(artifacts) / f"{name}-startup"
                    )
        elif artifacts is not None:
            with contextlib.suppress(Exception):
                _save_raw_logs(containers, Path(artifacts) / f"{name}-startup")
        cleanup()
        raise


def _start_proxy(
    cluster: LabCluster, containers: dict[str, DockerContainer], timeout: float
) -> LabCluster:
    """Start HAProxy (always the MariaDB image: the MySQL one has no haproxy) on the cluster's
    network (health checks: a login as haproxy_check on MariaDB, the server's greeting on MySQL,
    see lab/entrypoint.sh) and wait until it reports the source UP in ``writer`` and every replica UP in
    ``readers``; returns the cluster with ``proxy`` set."""
    image = ensure_lab_image("mariadb")
    replica_names = " ".join(r.name for r in cluster.replicas)
    c = DockerContainer(image)
    for key, value in {
        "LAB_ROLE": "proxy",
        "LAB_SOURCE": cluster.source.name,
        "LAB_REPLICAS": replica_names,
        "LAB_PROXY_API_PORT": str(PROXY_API_PORT),
        # HAProxy's mysql-check cannot log in to MySQL 9 (caching_sha2_password only).
        "LAB_PROXY_CHECK": "greeting" if cluster.flavor == "mysql" else "mysql",
    }.items():
        c.with_env(key, value)
    c.with_network(cluster.network).with_network_aliases("proxy")
    for port in (3306, 3307, PROXY_API_PORT):
        c.ports[f"{port}/tcp"] = (HOST, None)  # type: ignore[assignment]
    c.with_name(f"harestart-{cluster.name}-{SESSION_ID}-proxy")
    c.with_kwargs(
        hostname="proxy",
        labels={**_labels(), "harestart.lab.cluster": cluster.name, "harestart.lab.role": "proxy"},
    )
    containers["proxy"] = c
    c.start()

    def exited() -> str | None:
        wrapped = c.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("created", "running"):
            return None
        return str(wrapped.logs(tail=20).decode(errors="replace"))

    def failed(tail: str) -> RuntimeError:
        # An image built from a tree without the proxy role exits at once: say so.
        hint = (
            f" ({image} has no proxy role: rebuild it from this tree, lab/setup.sh image mariadb)"
            if "LAB_ROLE must be" in tail
            else ""
        )
        return RuntimeError(f"{cluster.name}/proxy exited during start-up{hint}:\n{tail}")

    def up_or_exited() -> bool:
        return exited() is not None or bool(c.get_wrapped_container().ports)

    wait_for(f"{cluster.name}/proxy running", up_or_exited, timeout=timeout)
    if (tail := exited()) is not None:
        raise failed(tail)
    lab_proxy = LabProxy(
        writer_port=_published(c, 3306),
        reader_port=_published(c, 3307),
        api_port=_published(c, PROXY_API_PORT),
        container=c,
    )

    def up() -> str | None:
        # "exited" ends the wait at once (an exception would only count as "not yet").
        if exited() is not None:
            return "exited"
        servers = lab_proxy.servers()
        wanted = [("writer", cluster.source.name)] + [("readers", r.name) for r in cluster.replicas]
        return "up" if all(servers[w]["status"] == "UP" for w in wanted) else None

    state = wait_for(f"HAProxy of {cluster.name} reporting its servers UP", up, timeout=timeout)
    if state == "exited":
        raise failed(exited() or "")
    return replace(cluster, proxy=lab_proxy)


def _save_raw_logs(containers: dict[str, DockerContainer], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for alias, c in containers.items():
        with contextlib.suppress(Exception):
            (dest / f"{alias}.container.log").write_bytes(
                c.get_wrapped_container().logs(timestamps=True)
            )


def _wait_ready(cluster: LabCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def alive() -> None:
        for n in cluster.containers:
            c = n.container.get_wrapped_container()
            c.reload()
            if c.status not in ("created", "running"):
                tail = c.logs(tail=20).decode(errors="replace")
                raise RuntimeError(f"{cluster.name}/{n.name} exited during start-up:\n{tail}")

    def probe_sql(n: LabNode) -> Callable[[], bool]:
        def probe() -> bool:
            alive()
            # Replicas know the admin user only once replication has applied it. (Bastion mode
            # asks as root on the socket; the manager's own start-up check, with the mha user
            # created after the admin user, covers that before PING_OK.)
            return bool(cluster.sql(n, "SELECT 1 AS ok"))

        return probe

    for n in cluster.db_nodes:
        wait_for(
            f"MySQL on {cluster.name}/{n.name} ({n.address}:{n.mysql_port})",
            probe_sql(n),
            timeout=left(),
        )
    for r in cluster.replicas:
        wait_for(
            f"replication threads on {cluster.name}/{r.name}",
            functools.partial(cluster.replicating, r),
            timeout=left(),
        )
    bastion = cluster.bastion
    for n in cluster.containers:
        if n.published:
            wait_for(
                f"sshd of {cluster.name}/{n.name} (127.0.0.1:{n.ssh_port})",
                functools.partial(_ssh_banner, n.ssh_port),
                timeout=left(),
            )
        else:
            assert bastion is not None
            wait_for(
                f"sshd of {cluster.name}/{n.name} ({n.address}:22 from the bastion)",
                functools.partial(_ssh_banner_via, bastion, n.address, n.ssh_port),
                timeout=left(),
            )

    def mha_ok() -> bool:
        alive()
        _, out = cluster.mha_status()
        return "PING_OK" in out

    wait_for(f"MHA PING_OK in {cluster.name}", mha_ok, timeout=left(), interval=1.0)


# --------------------------------------------------------------------------- sweeping


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(*, session: str | None = None, dead_only: bool = False) -> int:
    """Remove labelled test containers and networks: this session's (``session``), or those
    whose creating pytest process is gone (``dead_only``). Returns how many containers went."""
    try:
        client = docker.from_env()
    except Exception:
        return 0
    removed = 0
    filters = {"label": [f"{LABEL}=test"]}
    if session:
        filters["label"].append(f"{LABEL_SESSION}={session}")

    def doomed(labels: dict[str, str]) -> bool:
        if not dead_only:
            return True
        try:
            return not _pid_alive(int(labels.get(LABEL_PID, "0")))
        except ValueError:
            return True

    try:
        containers = client.containers.list(all=True, filters=filters)
        networks = client.networks.list(filters=filters)
    except Exception:
        client.close()
        return 0  # no engine to sweep (ensure_lab_image reports why)
    try:
        for c in containers:
            if doomed(c.labels):
                with contextlib.suppress(Exception):
                    c.remove(force=True, v=True)
                    removed += 1
        for net in networks:
            if doomed(net.attrs.get("Labels") or {}):
                with contextlib.suppress(Exception):
                    net.remove()
    finally:
        client.close()
    return removed


def artifacts_dir_for(nodeid: str) -> Path:
    return ARTIFACTS_DIR / _safe_name(nodeid.split("::", 1)[-1] if "::" in nodeid else nodeid)


def uptime(cluster: LabCluster, node: str) -> int:
    """mysqld's own Uptime on ``node`` (seconds)."""
    return int(cluster.sql(node, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0]["Value"])


def wait_restart_running(cluster: LabCluster, node: str, *, timeout: float = 60) -> None:
    """Until the lab's restart command (``service mariadb|mysql restart``) runs on ``node``:
    a run can be killed while it is in flight (the journal notes it just before sending)."""
    wait_for(
        f"{node}'s restart running on the host",
        lambda: cluster.exec(node, ["pgrep", "-f", f"{cluster.service} restart"])[0] == 0,
        timeout=timeout,
        interval=0.02,
    )


def ready_count(cluster: LabCluster, node: str) -> int:
    """How many times mysqld started on ``node``: 'ready for connections' lines in its log
    (``grep -c`` prints a count, 0 included, and exits 1 when it is 0)."""
    argv = ["grep", "-c", "ready for connections", "/var/log/mysql/error.log"]
    code, out = cluster.exec(node, argv)
    text = out.strip()
    if code not in (0, 1) or not text.isdigit():
        raise RuntimeError(f"{node}: counting mysqld starts: grep exited {code}: {out!r}")
    return int(text)
