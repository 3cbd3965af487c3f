"""`make bench` for `harestart serve`: GET latency under load, with a node paused, with idle
connections held open (issue #14, "Measure"), on one real lab cluster.

    python -m bench.api [--flavor mariadb|mysql] [--clients 50] [--duration 30] [--idle 500]
                        [--slowloris 1000] [--phases healthy,paused,idle,slowloris] [--json PATH]

One lab cluster (1 source + 2 replicas + MHA) of the chosen flavour, its inventory, a tokens
file and a real ``harestart serve`` subprocess on 127.0.0.1 (a free port, the server's
defaults: observer interval, worker pool, idle timeout). Once the group's first observation is
there, three phases:

- healthy: ``--clients`` threads, each with its own keep-alive ``requests.Session``, poll
  ``GET /v1.0/{account}/ha/{id}`` as fast as they can for ``--duration`` seconds: count,
  requests/s, p50/p99/max latency, errors by kind (a non-200 status or an exception);
- paused: one replica's container is paused (``docker pause``: its SSH and MySQL hang rather
  than fail), the bench waits (with a deadline) until an answer shows that replica
  unreachable, then the same load; also the observations' age seen meanwhile (a 1 Hz watcher
  on its own connection). The container is always unpaused;
- idle: ``--idle`` raw sockets connect, each sends one keep-alive GET and reads its answer,
  then stays silent; meanwhile a new client (a new connection per request) sends 20 GETs:
  p50/max and errors; finally every idle socket is checked: still open, or closed/reset by
  the server before its 30 s idle timeout;
- slowloris (issue #21): ``--clients`` keep-alive clients poll as in healthy while
  ``--slowloris`` connections each trickle one header byte every 2 s (a cut one reconnects, as
  an attacker would); also 20 GETs of a new client on new connections meanwhile, and how the
  trickling connections ended (cut at the server's request deadline, refused over its
  connection cap).

Results: a table with the issue's targets beside the figures and JSON (default
build/bench-api-FLAVOR.json), each phase with ``os.getloadavg()`` at its start and end. The
clients share the machine (and, being Python threads, one core) with the server: latencies
include the client's own scheduling. The benchmark asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors  # type: ignore[import-untyped]
import requests

from tests.integration import harestart_cli, lab

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-api-token-0123456789abcdef"  # noqa: S105 - a throwaway token for a lab server
ACCOUNT = "4242"
HA_ID = "bench-api"
REQUEST_TIMEOUT = 10.0  # seconds; a request that takes longer counts as an error (ReadTimeout)
PAUSED_DEADLINE = 120.0  # seconds to see the paused replica unreachable (observer + SSH timeout)
NEW_CLIENT_REQUESTS = 20

TARGETS = {
    "healthy_errors": "0",
    "paused_errors": "0",
    "paused_p99_s": "< 1 s (answers, bounded)",
    "paused_max_s": "< 1 s (answers, bounded)",
    "idle_new_client_max_s": "< 1 s",
    "idle_errors": "0",
    "idle_closed_early": "0",
}


def now() -> float:
    return time.perf_counter()


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def raise_nofile(wanted: int) -> dict[str, int]:
    """Raise this process's soft RLIMIT_NOFILE towards the hard limit (the server subprocess
    inherits it): ``wanted`` sockets plus some room must fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + 1024)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + 256:
        print(f"warning: RLIMIT_NOFILE {soft} is low for {wanted} idle sockets", file=sys.stderr)
    return {"soft": soft, "hard": hard}


def error_kind(exc: BaseException) -> str:
    return type(exc).__name__


def why_refused(body: str) -> str:
    """Which of serve's 503s an answer is: every worker busy, or over the connection cap."""
    if "workers are answering" in body:
        return " (workers busy)"
    if "connections open, its limit" in body:
        return " (connection cap)"
    return ""


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank method; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    def ms(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "p50_s": ms(percentile(latencies, 0.50)),
        "p99_s": ms(percentile(latencies, 0.99)),
        "max_s": ms(max(latencies) if latencies else None),
        "mean_s": ms(statistics.fmean(latencies) if latencies else None),
        "over_0_5_s": sum(1 for x in latencies if x > 0.5),
        "over_1_s": sum(1 for x in latencies if x > 1.0),
    }


def tcp_counters() -> dict[str, int]:
    """This network namespace's listen-queue counters (/proc/net/netstat; the whole machine's
    host namespace: other processes count too): connections the kernel dropped because an
    accept queue was full, and SYNs sent again (a dropped SYN costs its client 1 s)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    wanted = ("ListenOverflows", "ListenDrops", "TCPSynRetrans")
    out: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            out = {k: int(row[k]) for k in wanted if k in row}
    return out


def counters_delta(before: dict[str, int]) -> dict[str, int]:
    after = tcp_counters()
    return {k: after[k] - before[k] for k in after if k in before}


def server_side(log: Path, start: int, end: int | None = None) -> dict[str, Any]:
    """The server's own view of a phase: its access log between two byte offsets, the
    requests' durations inside the server (parsing to answer written) by status."""
    with log.open("rb") as f:
        f.seek(start)
        chunk = f.read() if end is None else f.read(end - start)
    durations: dict[str, list[float]] = collections.defaultdict(list)
    for line in chunk.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "api.request":
            durations[str(e.get("status"))].append(float(e.get("duration_ms") or 0.0) / 1000)
    return {
        status: {"count": len(d), **latency_summary(d)} for status, d in sorted(durations.items())
    }


# --- the server ------------------------------------------------------------------------------


def session() -> requests.Session:
    http = requests.Session()
    http.headers.update({"X-Auth-Token": TOKEN, "Accept": "application/json"})
    return http


def ha_doc(http: requests.Session, url: str) -> dict[str, Any]:
    r = http.get(url, timeout=REQUEST_TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")
    doc: dict[str, Any] = r.json()["ha_instance"]
    return doc


def wait_until(description: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` every 0.2 s until it returns something truthy; raise at the deadline."""
    return lab.wait_for(description, check, timeout=timeout, interval=0.2)


def start_server(
    cluster: lab.LabCluster, tmp: Path, args: tuple[str, ...] = ()
) -> tuple[harestart_cli.Served, str]:
    """``harestart serve`` on the cluster's inventory (server defaults); its GET URL, once the
    group's first observation is there (``observed_at`` set, state not UNKNOWN)."""
    inventory = cluster.write_inventory(tmp / "inv.yml", group_id=HA_ID, account=ACCOUNT)
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: ACCOUNT}))
    tokens.chmod(0o600)
    served = harestart_cli.start_serve(inventory, state_dir=tmp, tokens=tokens, args=args)
    url = served.url(f"/v1.0/{ACCOUNT}/ha/{HA_ID}")
    http = session()

    def observed() -> bool:
        doc = ha_doc(http, url)
        return doc["observed_at"] is not None and doc["state"] != "UNKNOWN"

    try:
        wait_until("the group's first observation", observed, timeout=120)
    except BaseException:
        harestart_cli.stop_serve(served.proc)
        raise
    finally:
        http.close()
    return served, url


# --- many clients polling --------------------------------------------------------------------


class Load:
    """``clients`` threads, each with its own keep-alive session, GET ``url`` until stopped."""

    def __init__(self, url: str, clients: int, log: Path) -> None:
        self.url, self.log = url, log
        self.stop = threading.Event()
        self.latencies: list[list[float]] = [[] for _ in range(clients)]
        self.errors: list[collections.Counter[str]] = [
            collections.Counter() for _ in range(clients)
        ]
        self.slowest_error: list[float] = [0.0] * clients
        self.threads = [
            threading.Thread(target=self._client, args=(i,), name=f"client-{i}", daemon=True)
            for i in range(clients)
        ]

    def _client(self, i: int) -> None:
        http = session()
        ok, errors = self.latencies[i], self.errors[i]
        try:
            while not self.stop.is_set():
                t0 = now()
                try:
                    r = http.get(self.url, timeout=REQUEST_TIMEOUT)
                    r.content  # noqa: B018 - read the whole body: part of the latency
                except requests.RequestException as exc:
                    errors[error_kind(exc)] += 1
                    self.slowest_error[i] = max(self.slowest_error[i], now() - t0)
                    continue
                took = now() - t0
                if r.status_code == 200:
                    ok.append(took)
                else:
                    errors[f"HTTP {r.status_code}{why_refused(r.text)}"] += 1
                    self.slowest_error[i] = max(self.slowest_error[i], took)
        finally:
            http.close()

    def run(self, duration: float) -> dict[str, Any]:
        load_before, tcp_before = loadavg(), tcp_counters()
        log_start = self.log.stat().st_size
        t0 = now()
        for t in self.threads:
            t.start()
        try:
            self.stop.wait(duration)
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(timeout=REQUEST_TIMEOUT + 5)
        elapsed = now() - t0
        result = self.summary(elapsed, load_before)
        result["tcp_counters_delta"] = counters_delta(tcp_before)
        result["server_side"] = server_side(self.log, log_start, self.log.stat().st_size)
        return result

    def summary(self, elapsed: float, load_before: list[float]) -> dict[str, Any]:
        latencies = [x for per_client in self.latencies for x in per_client]
        errors: collections.Counter[str] = collections.Counter()
        for c in self.errors:
            errors.update(c)
        return {
            "clients": len(self.threads),
            "duration_s": round(elapsed, 2),
            "ok": len(latencies),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            **latency_summary(latencies),
            "errors": sum(errors.values()),
            "errors_by_kind": dict(errors),
            "slowest_error_s": round(max(self.slowest_error), 4),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }


class Watcher:
    """Once a second, on its own connection: the observation's age and the watched replica's
    status in the server's answer (not counted in the load's figures)."""

    def __init__(self, url: str, replica: str) -> None:
        self.url, self.replica = url, replica
        self.seen: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="watcher", daemon=True)

    def _loop(self) -> None:
        http = session()
        try:
            while not self.stop.wait(1.0):
                try:
                    doc = ha_doc(http, self.url)
                except (requests.RequestException, RuntimeError) as exc:
                    self.seen.append({"error": error_kind(exc)})
                    continue
                self.seen.append(sample_of(doc, self.replica))
        finally:
            http.close()

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=REQUEST_TIMEOUT + 5)

    def summary(self) -> dict[str, Any]:
        ages = [s["observation_age_s"] for s in self.seen if s.get("observation_age_s") is not None]
        statuses = collections.Counter(
            str(s["replica_status"]) if "error" not in s else f"error {s['error']}"
            for s in self.seen
        )
        return {
            "samples": len(self.seen),
            "observation_age_s_min": min(ages, default=None),
            "observation_age_s_max": max(ages, default=None),
            "replica_statuses": dict(statuses),
            "observed_at_first": next(
                (s["observed_at"] for s in self.seen if "observed_at" in s), None
            ),
            "observed_at_last": next(
                (s["observed_at"] for s in reversed(self.seen) if "observed_at" in s), None
            ),
        }


def sample_of(doc: dict[str, Any], replica: str) -> dict[str, Any]:
    node = next(n for n in doc["replicas"] if n["name"] == replica)
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "observed_at": doc["observed_at"],
        "observation_age_s": doc["observation_age_s"],
        "replica_reachable": node.get("reachable"),
        "replica_status": node["status"],
        "state": doc["state"],
    }


# --- phases ----------------------------------------------------------------------------------


def healthy_phase(
    served: harestart_cli.Served, url: str, clients: int, duration: float
) -> dict[str, Any]:
    return Load(url, clients, served.log).run(duration)


def pause(container: Any, timeout: float = 60.0) -> None:
    """``docker pause``, again until it holds: under load the cgroup freezer can fail
    ("OCI runtime pause failed: unable to freeze")."""

    def paused() -> bool:
        try:
            container.pause()
        except docker.errors.APIError as exc:
            print(f"docker pause failed, again: {exc.explanation}", file=sys.stderr)
        container.reload()
        return bool(container.status == "paused")

    lab.wait_for("the container paused", paused, timeout=timeout, interval=1.0)


def unpause(container: Any) -> None:
    """Unpause if paused (the cluster is removed afterwards anyway)."""
    try:
        container.reload()
        if container.status == "paused":
            container.unpause()
    except docker.errors.APIError as exc:
        print(f"warning: docker unpause failed: {exc.explanation}", file=sys.stderr)


def paused_phase(
    cluster: lab.LabCluster, served: harestart_cli.Served, url: str, clients: int, duration: float
) -> dict[str, Any]:
    """One replica paused: wait until the server shows it unreachable, then the same load."""
    replica = cluster.replicas[0]
    container = replica.container.get_wrapped_container()
    http = session()
    slowest = [0.0]

    def unreachable() -> dict[str, Any] | None:
        t0 = now()
        doc = ha_doc(http, url)
        slowest[0] = max(slowest[0], now() - t0)
        s = sample_of(doc, replica.name)
        return s if s["replica_reachable"] is False else None

    try:
        pause(container)
        paused_at = now()
        try:
            seen = wait_until(
                f"{replica.name} unreachable in answers", unreachable, PAUSED_DEADLINE
            )
        except TimeoutError as exc:  # measured anyway, and reported
            print(f"warning: {exc}", file=sys.stderr)
            seen = None
        waited = now() - paused_at
        with Watcher(url, replica.name) as watcher:
            result = Load(url, clients, served.log).run(duration)
        result["watcher"] = watcher.summary()
    finally:
        unpause(container)
        http.close()
    result.update(
        paused_node=replica.name,
        seen_unreachable_after_s=round(waited, 2) if seen is not None else None,
        first_unreachable_answer=seen,
        slowest_get_while_waiting_s=round(slowest[0], 4),
    )
    return result


def raw_get(sock: socket.socket, path: str) -> int:
    """One keep-alive GET on an open socket; reads the whole answer; returns its status."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {TOKEN}\r\n"
        "Accept: application/json\r\nConnection: keep-alive\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the answer's body")
        body += chunk
    return int(status_line.split()[1])


def open_idle(port: int, path: str, count: int) -> tuple[list[socket.socket], dict[str, int]]:
    """``count`` connections, each after one keep-alive GET answered 200; failures by kind."""
    kept: list[socket.socket] = []
    failures: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
            status = raw_get(sock, path)
        except OSError as exc:
            failures[error_kind(exc)] += 1
            if sock is not None:
                sock.close()
            continue
        if status != 200:
            failures[f"HTTP {status}"] += 1
            sock.close()
            continue
        kept.append(sock)
    return kept, dict(failures)


def still_open(sock: socket.socket) -> str:
    """``open`` (nothing to read, no EOF), ``closed`` (EOF), ``reset`` or ``data`` (the server
    sent something unasked, e.g. a 408); never blocks."""
    sock.setblocking(False)
    try:
        got = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "reset"
    except OSError as exc:
        return error_kind(exc)
    finally:
        sock.settimeout(REQUEST_TIMEOUT)
    return "closed" if not got else "data"


def new_client_gets(url: str, count: int) -> tuple[list[float], dict[str, int]]:
    """``count`` GETs, each on a brand-new connection (no session, Connection: close)."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    headers = {"X-Auth-Token": TOKEN, "Accept": "application/json", "Connection": "close"}
    for _ in range(count):
        t0 = now()
        try:
            r = requests.get(url, headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            errors[error_kind(exc)] += 1
            continue
        if r.status_code == 200:
            latencies.append(now() - t0)
        else:
            errors[f"HTTP {r.status_code}{why_refused(r.text)}"] += 1
    return latencies, dict(errors)


def idle_phase(served: harestart_cli.Served, url: str, idle: int) -> dict[str, Any]:
    """``idle`` silent keep-alive connections held open while a new client GETs."""
    path = url.removeprefix(f"http://127.0.0.1:{served.port}")
    load_before, tcp_before = loadavg(), tcp_counters()
    t0 = now()
    kept, open_failures = open_idle(served.port, path, idle)
    opened_in = now() - t0
    try:
        latencies, errors = new_client_gets(url, NEW_CLIENT_REQUESTS)
        held = now() - t0
        states = collections.Counter(still_open(s) for s in kept)
        reuse: collections.Counter[str] = (
            collections.Counter()
        )  # a few idle connections still answer a second GET
        for sock in kept[:: max(1, len(kept) // 10)]:
            try:
                reuse[str(raw_get(sock, path))] += 1
            except OSError as exc:
                reuse[error_kind(exc)] += 1
    finally:
        for sock in kept:
            sock.close()
    return {
        "idle_wanted": idle,
        "idle_opened": len(kept),
        "open_failures": open_failures,
        "opened_in_s": round(opened_in, 2),
        "held_s": round(held, 2),
        "new_client_requests": NEW_CLIENT_REQUESTS,
        "new_client_ok": len(latencies),
        **{f"new_client_{k}": v for k, v in latency_summary(latencies).items()},
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "idle_states_after": dict(states),
        "closed_early": sum(n for state, n in states.items() if state != "open"),
        "second_get_on_idle": dict(reuse),
        "tcp_counters_delta": counters_delta(tcp_before),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


class Slowloris:
    """``count`` connections, each sending one byte of a request head every ``every`` seconds
    (one thread, non-blocking sockets); one the server answers or closes is counted (cut at
    the request deadline: a 400; over the cap: a 503; closed: nothing) and replaced."""

    HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: "

    def __init__(self, port: int, count: int, every: float = 2.0) -> None:
        self.port, self.count, self.every = port, count, every
        self.ended: collections.Counter[str] = collections.Counter()
        self.connect_errors: collections.Counter[str] = collections.Counter()
        self.bytes_sent = 0
        self.rounds = 0  # rounds of one byte to every connection sent so far
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="slowloris", daemon=True)
        self.selector = selectors.DefaultSelector()

    def _connect(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT)
        except OSError as exc:
            self.connect_errors[error_kind(exc)] += 1
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, [0])

    def _end(self, sock: socket.socket) -> None:
        try:
            answer = sock.recv(4096)
        except OSError as exc:
            answer = error_kind(exc).encode()
        status = answer.split(b" ", 2)[1].decode("latin-1", "replace") if b" " in answer else ""
        self.ended[status if status.isdigit() else answer.decode("latin-1")[:20] or "closed"] += 1
        self.selector.unregister(sock)
        sock.close()

    def _loop(self) -> None:
        for _ in range(self.count):
            self._connect()
        while not self.stop.is_set():
            tick = now() + self.every
            for key in list(self.selector.get_map().values()):
                sock, sent = key.fileobj, key.data
                payload = self.HEAD + b"a" * 100_000
                try:
                    sock.send(payload[sent[0] : sent[0] + 1])  # type: ignore[union-attr]
                    sent[0] += 1
                    self.bytes_sent += 1
                except OSError:
                    pass  # the reader below sees why
            self.rounds += 1
            while (left := tick - now()) > 0 and not self.stop.is_set():
                for key, _ in self.selector.select(left):
                    self._end(key.fileobj)  # type: ignore[arg-type]
            missing = self.count - len(self.selector.get_map())
            for _ in range(missing):  # as an attacker would: keep `count` trickling
                self._connect()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.count,
            "every_s": self.every,
            "open_at_end": len(self.selector.get_map()),
            "ended_by_status": dict(self.ended),
            "connect_errors": dict(self.connect_errors),
            "bytes_trickled": self.bytes_sent,
        }


def slowloris_phase(
    served: harestart_cli.Served, url: str, clients: int, duration: float, count: int
) -> dict[str, Any]:
    """Real clients (keep-alive, as in healthy) poll while ``count`` connections trickle."""
    load = Load(url, clients, served.log)
    slow = Slowloris(served.port, count)
    load_before, tcp_before = loadavg(), tcp_counters()
    log_start = served.log.stat().st_size
    for t in load.threads:  # the clients first, until each was answered once: their
        t.start()  # keep-alive connections are open before the trickling ones come
    wait_until("every client answered once", lambda: all(load.latencies), timeout=60)
    t0 = now()
    slow.thread.start()
    try:
        # every trickling connection open and trickling (its request arriving for a while)
        wait_until("the trickling connections trickling", lambda: slow.rounds >= 2, timeout=120)
        latencies, errors = new_client_gets(url, NEW_CLIENT_REQUESTS)
        load.stop.wait(max(0.0, duration - (now() - t0)))
    finally:
        load.stop.set()
        slow.stop.set()
        for t in load.threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        slow.thread.join(timeout=REQUEST_TIMEOUT + 5)
    result = load.summary(now() - t0, load_before)
    result["tcp_counters_delta"] = counters_delta(tcp_before)
    result["server_side"] = server_side(served.log, log_start, served.log.stat().st_size)
    result["slowloris"] = slow.summary()
    result["new_client_ok"] = len(latencies)
    result.update({f"new_client_{k}": v for k, v in latency_summary(latencies).items()})
    result["new_client_errors_by_kind"] = errors
    return result


# --- report ----------------------------------------------------------------------------------


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


Row = tuple[str, str, str]


def load_rows(name: str, ph: dict[str, Any], bounded: bool) -> list[Row]:
    return [
        (f"{name}: requests ok / req/s", f"{ph['ok']} / {ph['requests_per_s']}", ""),
        (
            f"{name}: p50 / p99 / max",
            f"{_s(ph['p50_s'])} / {_s(ph['p99_s'])} / {_s(ph['max_s'])}",
            "answers, bounded (< 1 s)" if bounded else "",
        ),
        (f"{name}: errors", f"{ph['errors']} {ph['errors_by_kind'] or ''}", "0"),
        (f"{name}: answers over 1 s", str(ph["over_1_s"]), "0" if bounded else ""),
        (f"{name}: in the server p50 / p99 (200)", server_200(ph), ""),
        (f"{name}: kernel listen overflows, SYN resent", tcp(ph), "0"),
        (f"{name}: loadavg before, after", f"{ph['loadavg_before']} {ph['loadavg_after']}", ""),
    ]


def server_200(ph: dict[str, Any]) -> str:
    ok = ph.get("server_side", {}).get("200")
    return "-" if not ok else f"{_s(ok['p50_s'])} / {_s(ok['p99_s'])}"


def tcp(ph: dict[str, Any]) -> str:
    d = ph.get("tcp_counters_delta", {})
    return f"{d.get('ListenOverflows', '-')}, {d.get('TCPSynRetrans', '-')} (machine-wide)"


def paused_rows(p: dict[str, Any]) -> list[Row]:
    w = p["watcher"]
    ages = f"{w['observation_age_s_min']} .. {w['observation_age_s_max']} s"
    return [
        ("paused: node unreachable in answers after", f"{p['seen_unreachable_after_s']} s", ""),
        ("paused: observation_age_s seen", ages, "data old, answer fast"),
        ("paused: replica status seen", str(w["replica_statuses"]), "SHUTDOWN"),
    ]


def idle_rows(i: dict[str, Any]) -> list[Row]:
    held = f"{i['idle_opened']}/{i['idle_wanted']} {i['open_failures'] or ''}"
    latency = f"{_s(i['new_client_p50_s'])} / {_s(i['new_client_max_s'])}"
    return [
        ("idle: connections held", held, str(i["idle_wanted"])),
        ("idle: new client GET p50 / max", latency, "< 1 s"),
        ("idle: new client errors", f"{i['errors']} {i['errors_by_kind'] or ''}", "0"),
        ("idle: closed early by the server", f"{i['closed_early']}", "0"),
        ("idle: a second GET on 1 in 10 idle", str(i["second_get_on_idle"]), "all 200"),
        ("idle: kernel listen overflows, SYN resent", tcp(i), "0"),
        ("idle: loadavg before, after", f"{i['loadavg_before']} {i['loadavg_after']}", ""),
    ]


def slowloris_rows(sl: dict[str, Any]) -> list[Row]:
    s = sl["slowloris"]
    new = f"{sl['new_client_ok']}/{NEW_CLIENT_REQUESTS} ok, {_s(sl['new_client_p50_s'])} / "
    return [
        (
            "slowloris: trickling connections, ended by",
            f"{s['connections']}, {s['ended_by_status']}",
            "cut (400)",
        ),
        ("slowloris: connect errors", str(s["connect_errors"] or 0), ""),
        ("slowloris: new client GETs ok, p50 / max", new + _s(sl["new_client_max_s"]), ""),
        ("slowloris: new client errors", str(sl["new_client_errors_by_kind"] or 0), ""),
    ]


def table(result: dict[str, Any]) -> str:
    """The figures, each with the issue's target beside it (where the issue gives one)."""
    h, p, i = result["healthy"], result["paused"], result["idle"]
    sl = result.get("slowloris") or {}
    rows: list[Row] = []
    if h:
        rows += load_rows("healthy", h, bounded=False)
    if p:
        rows += load_rows(f"paused ({p['paused_node']})", p, bounded=True) + paused_rows(p)
    if i:
        rows += idle_rows(i)
    if sl:
        rows += load_rows("slowloris", sl, bounded=True) + slowloris_rows(sl)
    if not rows:
        return "no figures (the bench stopped before its first phase ended)"
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}}  {'figure':<44} target", "-" * (width + 70)]
    lines += [f"{a:<{width}}  {b:<44} {c}" for a, b, c in rows]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:
    """Cluster, server, the three phases; fills ``result`` as it goes; cleans up always."""
    print(f"starting a {args.flavor} lab cluster: 1 source + 2 replicas + MHA ...", flush=True)
    t0 = now()
    cluster = lab.start_cluster(2, flavor=args.flavor)
    served: harestart_cli.Served | None = None
    try:
        result["cluster_start_s"] = round(now() - t0, 1)
        serve_args = ("--max-connections", str(args.max_connections))
        served, url = start_server(cluster, tmp, serve_args if args.max_connections else ())
        print(f"harestart serve on port {served.port}", flush=True)
        phases = args.phases.split(",")
        if "healthy" in phases:
            print("healthy phase ...", flush=True)
            result["healthy"] = healthy_phase(served, url, args.clients, args.duration)
        if "paused" in phases:
            print("paused phase ...", flush=True)
            result["paused"] = paused_phase(cluster, served, url, args.clients, args.duration)
        if "idle" in phases:
            print(f"idle phase: {args.idle} idle connections ...", flush=True)
            result["idle"] = idle_phase(served, url, args.idle)
        if "slowloris" in phases:
            print(f"slowloris phase: {args.slowloris} trickling connections ...", flush=True)
            result["slowloris"] = slowloris_phase(
                served, url, args.clients, args.duration, args.slowloris
            )
    finally:
        if served is not None:
            harestart_cli.stop_serve(served.proc)
            result["serve_exit_code"] = served.proc.returncode
            result["serve_log_summary"] = serve_log_summary(served.log)
        cluster.stop()


def serve_log_summary(log: Path) -> dict[str, Any]:
    """What the server logged: its events by name (not the access lines) and statuses."""
    events: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    for e in harestart_cli.log_events_tolerant(log):
        if e.get("event") == "api.request":
            statuses[str(e.get("status"))] += 1
        else:
            events[f"{e.get('level')}:{e.get('event')}"] += 1
    return {"events": dict(events), "access_statuses": dict(statuses)}


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so the ``finally`` blocks stop the server and
    the cluster (also when started in the background, where a shell ignores SIGINT)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, interrupt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.api", description=__doc__.split("\n\n")[0])
    ap.add_argument("--flavor", choices=lab.FLAVORS, default=lab.DEFAULT_FLAVOR)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per loaded phase")
    ap.add_argument("--idle", type=int, default=500, help="idle keep-alive connections")
    ap.add_argument("--slowloris", type=int, default=1000, help="trickling connections")
    ap.add_argument(
        "--max-connections", type=int, default=0, help="serve's --max-connections (0: its default)"
    )
    ap.add_argument(
        "--phases", default="healthy,paused,idle,slowloris", help="which phases, in that order"
    )
    ap.add_argument("--json", type=Path, help="default: build/bench-api-FLAVOR.json")
    args = ap.parse_args(argv)
    json_path: Path = args.json or REPO / "build" / f"bench-api-{args.flavor}.json"
    result: dict[str, Any] = {
        "flavor": args.flavor,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "nofile": raise_nofile(max(args.idle, args.slowloris) + 2 * args.clients),
        "loadavg_at_start": loadavg(),
        "targets": TARGETS,
        "healthy": {},
        "paused": {},
        "idle": {},
        "slowloris": {},
    }
    interrupt_on_signals()
    lab.ensure_lab_image(args.flavor)
    with tempfile.TemporaryDirectory(prefix="harestart-bench-api-") as tmp:
        code = 0
        try:
            measure(args, result, Path(tmp))
        except KeyboardInterrupt as exc:
            print(f"interrupted ({exc}): server and cluster stopped", file=sys.stderr)
            result["interrupted"] = str(exc)
            code = 130
        finally:
            result["loadavg_at_end"] = loadavg()
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nJSON: {json_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
