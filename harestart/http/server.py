"""``harestart serve``: the HTTP server loop around ``harestart.http.api``.

The standard library's ``ThreadingHTTPServer`` is enough for a loopback admin API that answers
a handful of small JSON requests (no dependency to keep up to date); this module only turns
bytes into an ``api.Request`` and an ``api.Response`` back into bytes, writes the access log,
watches the inventory file and handles SIGTERM/SIGINT:

- the first signal stops accepting work (every request is answered 503), asks running restarts
  to stop at their next safe point (their InterruptFlag: the current action finishes, the
  journal says where), waits for them, closes the listener and exits 0;
- a second signal abandons at once (exit 130); ``harestart resume`` continues from the journal.

Connections and workers are separate: an accepted or idle keep-alive connection waits in
one selector thread (it holds no worker) and is closed after ``idle_timeout`` (30 s by
default) of silence; once it has bytes to read it goes to one of ``max_workers`` worker
threads for one request (and any request already pipelined behind it), then back to the
selector. A worker reads and writes with the same socket timeout, so a client that stalls
mid-request frees its worker after ``idle_timeout``. When every worker is busy, the request
waits for one at most ``WORKER_WAIT`` (0.25 s; at most ``WAITING_PER_WORKER`` per worker wait),
then is answered 503 ``serviceUnavailable`` and the connection closed.

With ``--tls-cert/--tls-key`` (``tls_context``) it serves HTTPS through the standard library's
``ssl`` (TLS 1.2 at least); a connection's handshake runs in the worker that first takes it,
under the socket timeout (never in the accepting or selector thread). With every worker busy
a connection not yet through its handshake is closed without an answer (a 503 cannot be
sent before the handshake).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import queue
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from harestart import __version__
from harestart.domain.group import Group
from harestart.errors import ExitCode, HarestartError, UsageError
from harestart.http.api import (
    MAX_BODY,
    Api,
    InventoryUnavailable,
    Request,
    Response,
    TokenMap,
    fault_response,
    parse_count,
    parse_tokens,
    request_id_for,
    route_template,
)
from harestart.inventory.load import load_inventory
from harestart.inventory.model import Inventory
from harestart.views.metrics import GroupSnapshot, Metrics, snapshot_of

if TYPE_CHECKING:
    from harestart.engine.run import Environment
    from harestart.http.jobs import BackgroundObserver, BackgroundRestarter

log = structlog.get_logger("harestart.http.server")
access = structlog.get_logger("harestart.access")

# Seconds a connection may stay silent (before a request, inside one, or idle between two on a
# keep-alive connection) before the server closes it and frees its thread.
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_WORKERS = 16  # requests handled at once; more wait WORKER_WAIT, then get 503
# Seconds a request that found every worker busy waits for one before its 503, and how many may
# wait (per worker): a burst of short requests (50 clients polling 16 workers, a worker that
# answered a keep-alive client a moment before it freed its slot) is answered, not refused; a
# pool stuck on slow requests still answers 503 after this bound.
WORKER_WAIT = 0.25
WAITING_PER_WORKER = 4
# The listen backlog (socketserver's default is 5): clients that connect at the same moment
# (those a 503 closed reconnect together) would otherwise see SYNs dropped and pay 1 s each.
LISTEN_BACKLOG = 128
DEFAULT_OBSERVE_INTERVAL = 10.0  # seconds between two background observations of a group
STARTUP_OBSERVE_WAIT = 5.0  # at most this long before listening, for the first observations


# --- configuration ---------------------------------------------------------------------------


def load_tokens(path: str | None, env_name: str | None) -> TokenMap:
    """Tokens from ``--tokens FILE`` or ``--tokens-env NAME`` (exactly one of them)."""
    if (path is None) == (env_name is None):
        raise UsageError("serve needs exactly one of --tokens FILE or --tokens-env NAME")
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            mode = p.stat().st_mode
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the tokens file: {exc.strerror}") from None
        if mode & 0o077:
            log.warning("api.tokens.readable_by_others", file=path, mode=oct(mode & 0o777))
        return parse_tokens(text, path)
    value = os.environ.get(env_name) if env_name is not None else None
    if not value:
        raise UsageError(f"environment variable {env_name} (--tokens-env) is not set or empty")
    return parse_tokens(value, f"${env_name}")


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context for ``--tls-cert PATH --tls-key PATH`` (both or neither):
    the standard library's ``ssl``, TLS 1.2 at least, its default ciphers."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("serve needs both --tls-cert PATH and --tls-key PATH, or neither")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise UsageError(
            f"cannot load the TLS certificate {cert} with the key {key}: {reason} (both must be "
            "PEM files, the key unencrypted and matching the certificate)"
        ) from None
    return ctx


class InventoryFile:
    """The inventory given to ``serve``, re-read when the file changes (size, mtime, inode).

    A file that can no longer be loaded makes ``current()`` raise InventoryUnavailable (503)
    until it can be loaded again; the last good inventory is not used in the meantime, since
    it may describe hosts the operator meant to take out. ``secret_env``: variables holding a
    secret besides the inventory's own (the tokens' ``--tokens-env``), refused in
    ``hooks.env_passthrough`` at every load.
    """

    def __init__(
        self,
        path: str,
        initial: Inventory,
        *,
        prepare: Callable[[Inventory], Inventory] = lambda inv: inv,
        secret_env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self._prepare = prepare
        self._secret_env = dict(secret_env or {})
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._inventory: Inventory | None = initial
        self._problem: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> Inventory:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    loaded = load_inventory(self.path, secret_env=self._secret_env)
                    self._inventory = self._prepare(loaded)
                    self._problem = None
                    log.info("api.inventory.reloaded", file=self.path)
                except HarestartError as exc:
                    self._inventory = None
                    self._problem = str(exc).splitlines()[0]
                    log.error("api.inventory.unavailable", file=self.path, error=str(exc))
            if self._inventory is None:
                raise InventoryUnavailable(
                    f"the inventory cannot be loaded ({self._problem}); fix the file and retry"
                )
            return self._inventory


# --- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = f"harestart/{__version__}"
    sys_version = ""
    server: ApiHttpServer
    connection: socket.socket

    keep_open = False  # after handle(): the connection goes back to the selector

    def setup(self) -> None:
        super().setup()
        # http.server closes the connection when a read times out (a client stalling).
        self.connection.settimeout(self.server.idle_timeout)

    def handle(self) -> None:
        """Requests while some are already here (pipelined); then hand the connection back
        to the selector instead of waiting for the next one on this worker."""
        while True:
            self.handle_one_request()
            if self.close_connection:
                return
            if not self._buffered():
                self.keep_open = True
                return

    def _buffered(self) -> bool:
        """Is a next request already in the read buffer (or the socket)? Never blocks."""
        pending = getattr(self.connection, "pending", None)  # TLS: decrypted bytes waiting
        if pending is not None and pending():
            return True
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]
        except (BlockingIOError, OSError):
            return False
        finally:
            self.connection.settimeout(self.server.idle_timeout)

    def do_GET(self) -> None:
        self._dispatch()

    # Every method of RFC 9110, PATCH (RFC 5789) and QUERY (the httpbis draft) reaches the API,
    # which answers 405 with Allow when the resource does not take it; a method the server does
    # not recognise gets 501 notImplemented (RFC 9110, 15.6.2), as http.server sends it.
    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET
    do_TRACE = do_CONNECT = do_QUERY = do_GET

    def _dispatch(self) -> None:
        started = time.monotonic()
        rid = request_id_for(self.headers.get("X-Request-Id"))
        path, _, query = self.path.partition("?")
        resp = self._read_and_handle(rid, path, query)
        # Counted before the answer goes out: a client that has its answer and then reads
        # /metrics sees its request counted (counted after, a loaded CI run saw it missing).
        self.server.count_request(self.command, route_template(path), resp.status)
        self._send(resp, rid)
        access.info(
            "api.request",
            request_id=rid,
            method=self.command,
            path=path,
            query=query or None,
            status=resp.status,
            account=resp.account,
            bytes=len(resp.body),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            client=self.client_address[0],
            user_agent=self.headers.get("User-Agent"),
        )

    def _read_and_handle(self, rid: str, path: str, query: str) -> Response:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            return fault_response(400, "chunked bodies are not supported: send Content-Length", rid)
        raw_length = self.headers.get("Content-Length") or "0"
        parsed = parse_count(raw_length)
        if parsed is None:
            self.close_connection = True
            return fault_response(400, f"invalid Content-Length {raw_length[:40]!r}", rid)
        length = parsed
        body: bytes | None = None
        if length <= MAX_BODY:
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                self.close_connection = True
                return fault_response(
                    400, f"the body did not arrive within {self.server.idle_timeout:g} s", rid
                )
        else:
            self.close_connection = True  # the body stays unread: this connection is done
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            body_length=length,
            request_id=rid,
        )
        return self.server.api.handle(request)

    def _send(self, resp: Response, rid: str) -> None:
        self.send_response(resp.status)
        names = {name.lower() for name, _ in resp.headers}
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("X-Request-Id", rid)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (bad request line, unknown method, header flood)
        get the same JSON fault body as everything else."""
        self.close_connection = True
        rid = request_id_for(None)
        status = code if code in (400, 404, 413, 501) else 400
        resp = fault_response(status, message or "bad request", rid)
        self.server.count_request(self.command or "OTHER", "unmatched", status)  # see _dispatch
        try:
            self._send(resp, rid)
        except OSError:
            return
        access.info(
            "api.request", request_id=rid, method=self.command, status=status, error=message
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own stderr lines; the access log is structlog JSON."""

    def log_error(self, format: str, *args: Any) -> None:
        """http.server calls this (only) when a read or write timed out: the connection is
        closed and its thread freed."""
        log.debug("api.connection.closed", client=self.client_address[0], reason=format % args)


class ApiHttpServer(ThreadingHTTPServer):
    """http.server with a fixed pool of worker threads and a selector for idle connections.

    ``process_request`` (called for each accepted connection) parks it in the selector; a
    parked connection with bytes to read is handed to a free worker, or waits for one (in
    the ``api-waiting`` thread, oldest first) at most ``worker_wait`` before a 503; one silent
    for ``idle_timeout`` is closed.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        api: Api,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        metrics: Metrics | None = None,
        tls: ssl.SSLContext | None = None,
        worker_wait: float = WORKER_WAIT,
    ) -> None:
        self.api = api
        self.idle_timeout = idle_timeout
        self.tls = tls
        self.max_workers = max_workers
        self.worker_wait = worker_wait
        self.max_waiting = WAITING_PER_WORKER * max_workers
        self._waiting: queue.SimpleQueue[tuple[socket.socket, Any, float] | None] = (
            queue.SimpleQueue()
        )
        self._waiting_count = 0  # changed by the selector thread and the waiting thread
        self._waiting_lock = threading.Lock()
        self.metrics = metrics if metrics is not None else api.metrics
        self._free = threading.Semaphore(max_workers)
        self._work: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._incoming: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closing = threading.Event()
        super().__init__(address, _Handler)
        self._pool_threads = [
            threading.Thread(target=self._worker, name=f"api-worker-{i}", daemon=True)
            for i in range(max_workers)
        ] + [
            threading.Thread(target=self._wait_loop, name="api-waiting", daemon=True),
            threading.Thread(target=self._park_loop, name="api-connections", daemon=True),
        ]
        for t in self._pool_threads:
            t.start()

    def count_request(self, method: str, route: str, code: int) -> None:
        if self.metrics is not None:
            self.metrics.record_request(method, route, code)

    # --- connections ---------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        self._park(request, client_address)

    def _park(self, conn: socket.socket, address: Any) -> None:
        self._incoming.put((conn, address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _park_loop(self) -> None:
        """The selector thread: idle connections wait here, without a worker."""
        parked: dict[socket.socket, tuple[Any, float]] = {}
        while not self._closing.is_set():
            now = time.monotonic()
            while not self._incoming.empty():
                conn, address = self._incoming.get()
                try:
                    self._selector.register(conn, selectors.EVENT_READ, address)
                except (ValueError, OSError):  # closed meanwhile
                    self.shutdown_request(conn)
                    continue
                parked[conn] = (address, now)
            oldest = min((since for _, since in parked.values()), default=now)
            wait = max(0.01, min(1.0, oldest + self.idle_timeout - now))
            for key, _ in self._selector.select(wait):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                self._selector.unregister(conn)
                address, _since = parked.pop(conn)
                self._hand_over(conn, address)
            now = time.monotonic()
            for conn, (address, since) in list(parked.items()):
                if now - since >= self.idle_timeout:  # silent too long: free the socket
                    self._selector.unregister(conn)
                    del parked[conn]
                    log.debug("api.connection.closed", client=address[0], reason="idle")
                    self.shutdown_request(conn)
        for conn in parked:
            self.shutdown_request(conn)

    def _hand_over(self, conn: socket.socket, address: Any) -> None:
        """To a free worker; else to the waiting line (oldest first); when that is full, 503."""
        with self._waiting_lock:
            if self._waiting_count == 0 and self._free.acquire(blocking=False):
                self._work.put((conn, address))
                return
            full = self._waiting_count >= self.max_waiting
            if not full:
                self._waiting_count += 1
        if full:
            self._busy(conn, address, f"{self.max_waiting} requests wait for one")
        else:
            self._waiting.put((conn, address, time.monotonic() + self.worker_wait))

    def _wait_loop(self) -> None:
        """The waiting line: each connection gets the next free worker, or 503 at its deadline."""
        while (item := self._waiting.get()) is not None:
            conn, address, deadline = item
            got = self._free.acquire(timeout=max(0.0, deadline - time.monotonic()))
            with self._waiting_lock:
                self._waiting_count -= 1
            if self._closing.is_set():  # the workers are gone
                if got:
                    self._free.release()
                self.shutdown_request(conn)
            elif got:
                self._work.put((conn, address))
            else:
                self._busy(conn, address, f"waited {self.worker_wait:g} s for one")

    def _busy(self, conn: socket.socket, address: Any, why: str = "") -> None:
        """Every worker is busy: 503 at once, then close (the request is not read). A TLS
        connection not through its handshake yet is closed without an answer; one its client
        closed (an idle keep-alive connection ending) is closed without a 503 counted."""
        if self.tls is not None and not isinstance(conn, ssl.SSLSocket):
            self.count_request("OTHER", "unmatched", 503)
            access.info("api.request", status=503, client=address[0], busy=True, tls=True)
            self.shutdown_request(conn)
            return
        rid = request_id_for(None)
        resp = fault_response(
            503,
            f"the server is busy: all {self.max_workers} workers are answering requests"
            + (f" ({why})" if why else "")
            + "; retry",
            rid,
        )
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(resp.body)}\r\nX-Request-Id: {rid}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                # what arrived: closing over unread bytes would reset
                if not conn.recv(65536):  # the client closed its idle connection: no request
                    self.shutdown_request(conn)
                    return
            conn.settimeout(1.0)
            conn.sendall(head.encode() + resp.body)
        except OSError:
            pass
        self.count_request("OTHER", "unmatched", 503)
        access.info("api.request", request_id=rid, status=503, client=address[0], busy=True)
        self.shutdown_request(conn)

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            conn, address = item
            keep = False
            try:
                conn = self._secured(conn, address)
                handler = _Handler(conn, address, self)
                keep = getattr(handler, "keep_open", False) and not self._closing.is_set()
            except Exception:
                self.handle_error(conn, address)
            finally:
                # Free the slot before parking: the client, answered, may send its next
                # request before this thread runs again.
                self._free.release()
            if keep:
                self._park(conn, address)
            else:
                self.shutdown_request(conn)

    def _secured(self, conn: socket.socket, address: Any) -> socket.socket:
        """With TLS, a connection's first turn in a worker is its handshake, under the socket
        timeout; a failed one (an old protocol, not TLS at all, a silent client) raises and
        the connection is closed."""
        if self.tls is None or isinstance(conn, ssl.SSLSocket):
            return conn
        conn.settimeout(self.idle_timeout)
        try:
            return self.tls.wrap_socket(conn, server_side=True)
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset
            log.debug("api.tls.refused", client=address[0], reason=str(exc))
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An exception escaped a connection (a reset, a TLS error mid-request): one JSON event
        instead of socketserver's traceback on stderr, where the log is JSON lines."""
        exc = sys.exc_info()[1]
        client = client_address[0] if client_address else None
        if isinstance(exc, OSError):
            log.debug("api.connection.error", client=client, error=str(exc))
        else:
            log.exception("api.connection.error", client=client)

    def server_close(self) -> None:
        super().server_close()
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        for _ in range(self.max_workers):
            self._work.put(None)
        self._waiting.put(None)
        self._pool_threads[-1].join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class ApiServer:
    """The API on a socket, served from a background thread (``start``/``stop``)."""

    def __init__(
        self,
        api: Api,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        tls: ssl.SSLContext | None = None,
        worker_wait: float = WORKER_WAIT,
    ) -> None:
        self.httpd = ApiHttpServer(
            (host, port),
            api,
            idle_timeout=idle_timeout,
            max_workers=max_workers,
            tls=tls,
            worker_wait=worker_wait,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> ApiServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="api-http"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()


# --- harestart serve -------------------------------------------------------------------------


def serve(
    inventory: Inventory,
    *,
    host: str,
    port: int,
    tokens: TokenMap,
    accept_new_host_keys: bool = False,
    observe_interval: float = DEFAULT_OBSERVE_INTERVAL,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_workers: int = DEFAULT_MAX_WORKERS,
    tls: ssl.SSLContext | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).

    ``tls`` (see ``tls_context``): serve HTTPS instead of HTTP. ``secret_env``: see
    ``InventoryFile``."""
    stopping = threading.Event()
    api, restarter, observer = build_api(
        inventory,
        tokens,
        stopping,
        accept_new_host_keys=accept_new_host_keys,
        observe_interval=observe_interval,
        secret_env=secret_env,
    )
    try:
        server = ApiServer(
            api, host, port, idle_timeout=idle_timeout, max_workers=max_workers, tls=tls
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if not _is_loopback(host) and tls is None:
        log.warning(
            "api.not_loopback",
            host=host,
            note="tokens travel in clear text: use --tls-cert/--tls-key or a TLS reverse proxy",
        )
    with _stop_signals(stopping) as signals:
        observer.start()
        _first_observations(observer, stopping)
        server.start()
        _log_listening(server, inventory, tokens, tls)
        try:
            _until_stopped(stopping, signals, restarter)
        finally:
            server.stop()
            observer.stop()
    log.info("api.stopped")
    return int(ExitCode.OK)


def _first_observations(observer: BackgroundObserver, stopping: threading.Event) -> None:
    """Listen once every group was observed (or STARTUP_OBSERVE_WAIT passed): the first
    answers then carry observations rather than observed_at null."""
    deadline = time.monotonic() + STARTUP_OBSERVE_WAIT
    while not observer.observed_all() and time.monotonic() < deadline:
        if stopping.wait(0.05):
            return


def _log_listening(
    server: ApiServer, inventory: Inventory, tokens: TokenMap, tls: ssl.SSLContext | None
) -> None:
    bound_host, bound_port = server.address
    scheme = "https" if tls is not None else "http"
    log.info(
        "api.listening",
        host=bound_host,
        port=bound_port,
        scheme=scheme,
        url=f"{scheme}://{bound_host}:{bound_port}/v1.0/",
        contract=f"{scheme}://{bound_host}:{bound_port}/openapi.json",
        inventory=inventory.path,
        groups=len(inventory.groups),
        tokens=len(tokens),
    )


def build_api(
    inventory: Inventory,
    tokens: TokenMap,
    stopping: threading.Event,
    *,
    accept_new_host_keys: bool = False,
    observe_interval: float = DEFAULT_OBSERVE_INTERVAL,
    env: Environment | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> tuple[Api, BackgroundRestarter, BackgroundObserver]:
    """The API of ``serve``: background restarts and observations, and metrics in a
    registry of its own. ``env``: the hosts and state directory (default: the real ones).
    ``secret_env``: see ``InventoryFile``."""
    from harestart.engine.run import observe
    from harestart.http.jobs import BackgroundObserver, BackgroundRestarter

    def prepare(inv: Inventory) -> Inventory:
        return inv.accepting_new_host_keys() if accept_new_host_keys else inv

    # paramiko logs failed handshakes of the background observations through the standard
    # logging module, which without a handler prints them on stderr between serve's JSON lines;
    # the observations report them (ssh_error).
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    inventory_file = InventoryFile(
        inventory.path, prepare(inventory), prepare=prepare, secret_env=secret_env
    )
    metrics = Metrics(http=True)
    restarter = BackgroundRestarter(inventory.path, metrics=metrics, env=env)

    def context_of(g: Group) -> object:  # what Api._show compares with
        view = restarter.view(g)
        return (view.verdict(g).state, view.current_step)

    observer = BackgroundObserver(
        lambda: inventory_file.current().groups,
        observe=None if env is None else (lambda g: observe(g, env=env)),
        interval=observe_interval,
        timeout=max(60.0, 3 * observe_interval),
        context_of=context_of,
    )
    restarter.on_finished = observer.refresh
    metrics.watch_groups(lambda: group_snapshots(inventory_file, restarter, observer))
    api = Api(
        tokens=tokens,
        inventory=inventory_file,
        restarter=restarter,
        observer=observer,
        shutting_down=stopping.is_set,
        metrics=metrics,
    )
    return api, restarter, observer


def group_snapshots(
    inventory: InventoryFile, restarter: BackgroundRestarter, observer: BackgroundObserver
) -> Iterable[GroupSnapshot]:
    """Every group's gauges at a scrape: judged like GET /ha/{id}, from the latest observation
    (never a new one) and the lock and journal."""
    try:
        groups = inventory.current().groups
    except InventoryUnavailable:
        return []
    out = []
    for g in groups:
        view = restarter.view(g)
        observed = observer.latest(g)
        state = observed.state if observed is not None else None
        out.append(
            snapshot_of(
                g.account,
                g.id,
                view.verdict(g, state).state,
                state,
                lock_held=view.facts.lock.held,
                observation_age_s=observed.age_s if observed is not None else None,
            )
        )
    return out


@contextlib.contextmanager
def _stop_signals(stopping: threading.Event) -> Iterator[list[str]]:
    """SIGINT/SIGTERM set ``stopping`` (the names are collected); a second one abandons."""
    signals: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        signals.append(name)
        if len(signals) > 1:
            raise KeyboardInterrupt(name)  # second signal: abandon at once
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _until_stopped(
    stopping: threading.Event, signals: list[str], restarter: BackgroundRestarter
) -> None:
    """Wait for a stop signal, then let running restarts stop at their next safe point."""
    while not stopping.wait(0.2):
        pass
    log.warning("api.stopping", signal=signals[0])
    running = restarter.stop_all(signals[0])
    if running:
        log.warning("api.stopping.waiting", running_restarts=running)
    while not restarter.wait(timeout=0.2):
        pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
