"""Real coordination services for the shared-lock tests: etcd 3.4 and Redis 7.0.

Each runs in one container of its own, from the MariaDB lab image (lab/Dockerfile installs
Debian's ``etcd-server`` and ``redis-server``), on a Docker network of its own, with the lab's
labels (so ``lab.sweep`` removes what a dead session left). Its client port is published on
127.0.0.1 only, on a port picked here once and kept for the container's life: ``stop()`` and
``start()`` (the "service down mid-run" faults) bring it back at the same URL, with its data
(etcd's data dir lives in the container's own filesystem).

    svc = start_etcd()           # svc.url == "etcd3+http://127.0.0.1:PORT"
    svc = start_redis(password)  # svc.url == "redis://127.0.0.1:PORT" (no password in it)
    svc.stop(); svc.start(); svc.pause(); svc.unpause(); svc.remove()
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from . import lab
from .lab import HOST, SESSION_ID, wait_for

Kind = Literal["etcd", "redis"]
# The image both services come from (the MariaDB flavour's; Debian 12 packages).
IMAGE_FLAVOR = "mariadb"
READY_TIMEOUT = 60.0
ETCD_PORT = 2379
REDIS_PORT = 6379


def _free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now (docker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class CoordService:
    """One running coordination service, reached at ``url`` from the host."""

    kind: Kind
    name: str
    port: int  # published on 127.0.0.1
    container: DockerContainer = field(repr=False)
    network: Network = field(repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL for ``defaults.coordination.url``: never with the password in it."""
        if self.kind == "etcd":
            return f"etcd3+http://{HOST}:{self.port}"
        return f"redis://{HOST}:{self.port}"

    @property
    def url_with_password(self) -> str:
        """The URL with the password inline (only for tests of how such URLs are shown)."""
        if self.kind != "redis" or self.password is None:
            return self.url
        return f"redis://:{self.password}@{HOST}:{self.port}"

    # ---- liveness

    def answers(self) -> bool:
        """Whether the service serves requests at ``url`` right now (a real read, not a ping of
        the port alone)."""
        try:
            if self.kind == "etcd":
                self.etcd_keys()
                return True
            return self._redis(["PING"]).startswith(b"+PONG")
        except OSError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def probe() -> bool:
            self._alive()
            return self.answers()

        wait_for(f"{self.kind} at {self.url}", probe, timeout=timeout, interval=0.2)

    def _alive(self) -> None:
        c = self.container.get_wrapped_container()
        c.reload()
        if c.status not in ("created", "running", "paused"):
            tail = c.logs(tail=20).decode(errors="replace")
            raise RuntimeError(f"{self.name} exited ({c.status}):\n{tail}")

    # ---- faults

    def stop(self, timeout: int = 5) -> None:
        """Stop the service (SIGTERM, then SIGKILL after ``timeout``): its port refuses
        connections until ``start()``. The container and its data stay."""
        self.container.get_wrapped_container().stop(timeout=timeout)

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start a stopped service again, at the same URL with the same data; waits until it
        answers."""
        self.container.get_wrapped_container().start()
        self.wait_ready(timeout)

    def pause(self) -> None:
        """Freeze the service (``docker pause``): connections hang instead of being refused."""
        self.container.get_wrapped_container().pause()

    def unpause(self) -> None:
        self.container.get_wrapped_container().unpause()

    def remove(self) -> None:
        """Remove the container and its network (best effort, idempotent)."""
        with contextlib.suppress(Exception):
            self.container.stop(force=True, delete_volume=True)
        with contextlib.suppress(Exception):
            self.network.remove()

    def save_logs(self, dest: str | Path) -> Path:
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        try:
            logs = self.container.get_wrapped_container().logs(timestamps=True)
            (out / f"{self.name}.container.log").write_bytes(logs)
        except Exception as exc:
            (out / f"{self.name}.container.log").write_text(f"could not read logs: {exc}\n")
        with contextlib.suppress(Exception):
            (out / f"{self.name}.keys.json").write_text(json.dumps(self.dump(), indent=2))
        return out

    # ---- what the service holds (diagnostics and secret checks)

    def dump(self) -> dict[str, str]:
        """Every key and (text) value the service holds."""
        if self.kind == "etcd":
            return self.etcd_keys()
        keys = self._redis_lines(["KEYS", "*"])
        return {k: self._redis_value(k) for k in keys}

    def etcd_keys(self, prefix: bytes = b"\0") -> dict[str, str]:
        """All keys (from ``prefix``) and values, through etcd's own JSON gateway (v3 API)."""
        return {
            base64.b64decode(kv["key"]).decode(errors="replace"): base64.b64decode(
                kv.get("value", "")
            ).decode(errors="replace")
            for kv in self._etcd_range(prefix, b"\0")
        }

    def etcd_leases(self, prefix: bytes) -> dict[str, str]:
        """The keys from ``prefix`` (to its end) and the id of the lease each hangs on ("0":
        none), through etcd's JSON gateway."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        return {
            base64.b64decode(kv["key"]).decode(errors="replace"): str(kv.get("lease", "0"))
            for kv in self._etcd_range(prefix, end)
        }

    def _etcd_range(self, key: bytes, range_end: bytes) -> list[dict[str, Any]]:
        """The key-value records of one v3 range request (``range_end`` as etcd reads it)."""
        body = {
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(range_end).decode(),
        }
        req = urllib.request.Request(
            f"http://{HOST}:{self.port}/v3/kv/range",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - 127.0.0.1 only
            doc = json.loads(resp.read())
        return list(doc.get("kvs", []))

    def etcd_requests(self, method: str) -> float:
        """How many requests of a gRPC ``method`` (e.g. ``LeaseKeepAlive``) etcd has served
        (its /metrics; the JSON gateway's requests are counted there too)."""
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("grpc_server_started_total{") and f'grpc_method="{method}"' in line
        )

    def leased_keys(self, account: str, group_id: str) -> list[str]:
        """The keys of a group's lock and of its holder record (a member of the holder's tooz
        group) that etcd still holds: each lives on a lease, so a dead holder's disappear
        when the leases run out. (tooz's etcd3gw driver: ``/tooz/locks<name>`` and
        ``tooz/groups/<group>/<member>``; harestart's names: adapters/coordination.py.)"""
        base = f"harestart~{account}~{group_id}"
        lock, members = f"/tooz/locks{base}~lock", f"tooz/groups/{base}~holder/"
        return sorted(
            k for k in self.etcd_keys() if k == lock or (k.startswith(members) and k != members)
        )

    def _redis(self, command: list[str]) -> bytes:
        """Send one command (after AUTH when there is a password); the raw reply."""

        def encode(args: list[str]) -> bytes:
            parts = [f"*{len(args)}\r\n".encode()]
            for a in args:
                raw = a.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
            return b"".join(parts)

        with socket.create_connection((HOST, self.port), timeout=3) as s:
            s.settimeout(3)
            if self.password is not None:
                s.sendall(encode(["AUTH", self.password]))
                reply = s.recv(256)
                if not reply.startswith(b"+OK"):
                    raise OSError(f"redis AUTH refused: {reply[:80]!r}")
            s.sendall(encode(command))
            data = b""
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or data.endswith(b"\r\n"):
                    return data

    def _redis_lines(self, command: list[str]) -> list[str]:
        """A multi-bulk reply's items as text (good enough for KEYS on a small keyspace)."""
        lines = self._redis(command).decode(errors="replace").split("\r\n")
        return [ln for ln in lines[1:] if ln and not ln.startswith(("$", "*"))]

    def _redis_value(self, key: str) -> str:
        kind = self._redis(["TYPE", key]).decode(errors="replace").strip("+\r\n")
        if kind == "string":
            return "\n".join(self._redis_lines(["GET", key])) or ""
        if kind == "hash":
            return "\n".join(self._redis_lines(["HGETALL", key]))
        return f"<{kind}>"


def _start(
    kind: Kind, container_port: int, command: list[str], password: str | None
) -> CoordService:
    image = lab.ensure_lab_image(IMAGE_FLAVOR)
    name = f"harestart-{kind}-{uuid.uuid4().hex[:6]}-{SESSION_ID}"
    network = Network(docker_network_kw={"labels": lab._labels(), "driver": "bridge"})
    network.name = name
    network.create()
    port = _free_port()
    c = DockerContainer(image)
    c.with_network(network).with_network_aliases(kind)
    c.ports[f"{container_port}/tcp"] = (HOST, port)  # type: ignore[assignment]
    c.with_name(name)
    c.with_command(command)
    c.with_kwargs(
        hostname=kind,
        # Not the lab entrypoint (that sets up a database node): tini and the service alone.
        entrypoint=["/usr/bin/tini", "--"],
        # The image's healthcheck is the database node's; it means nothing here.
        healthcheck={"test": ["NONE"]},
        labels={**lab._labels(), "harestart.lab.service": kind},
    )
    svc = CoordService(kind, name, port, c, network, password)
    try:
        c.start()
        svc.wait_ready()
    except BaseException:
        svc.remove()
        raise
    return svc


def start_etcd() -> CoordService:
    """One etcd 3.4 member (Debian's ``etcd-server``), its client API on
    ``etcd3+http://127.0.0.1:PORT`` (the JSON gateway etcd3gw talks to)."""
    return _start(
        "etcd",
        ETCD_PORT,
        [
            "etcd",
            "--name=lab",
            "--data-dir=/var/lib/etcd/lab",
            f"--listen-client-urls=http://0.0.0.0:{ETCD_PORT}",
            f"--advertise-client-urls=http://etcd:{ETCD_PORT}",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=lab=http://127.0.0.1:2380",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ],
        None,
    )


def start_redis(password: str | None = None) -> CoordService:
    """One Redis 7.0 server (Debian's ``redis-server``), no persistence, reached at
    ``redis://127.0.0.1:PORT``; with ``password``, clients must AUTH (``requirepass``)."""
    command = [
        "redis-server",
        "--bind",
        "0.0.0.0",  # noqa: S104 - inside its container; published on 127.0.0.1 only
        "--port",
        str(REDIS_PORT),
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    if password is not None:
        command += ["--requirepass", password]
    return _start("redis", REDIS_PORT, command, password)
