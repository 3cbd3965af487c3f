"""``harestart serve``: the HTTP server loop around ``harestart.http.api``.

The standard library's ``ThreadingHTTPServer`` is enough for a loopback admin API that answers
a handful of small JSON requests (no dependency to keep up to date); this module only turns
bytes into an ``api.Request`` and an ``api.Response`` back into bytes, writes the access log,
watches the inventory file and handles SIGTERM/SIGINT:

- the first signal stops accepting work (every request is answered 503), asks running restarts
  to stop at their next safe point (their InterruptFlag: the current action finishes, the
  journal says where), waits for them, closes the listener and exits 0;
- a second signal abandons at once (exit 130); ``harestart resume`` continues from the journal.

Every connection has a socket timeout (``idle_timeout``, 30 s by default): a client that
connects and says nothing, or leaves a keep-alive connection idle, is disconnected after it,
so it cannot hold one of the server's threads forever.

With ``--tls-cert/--tls-key`` (``tls_context``) it serves HTTPS through the standard library's
``ssl`` (TLS 1.2 at least); each connection's handshake runs in that connection's thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from harestart import __version__
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
)
from harestart.inventory.load import load_inventory
from harestart.inventory.model import Inventory

if TYPE_CHECKING:
    from harestart.http.jobs import BackgroundRestarter

log = structlog.get_logger("harestart.http.server")
access = structlog.get_logger("harestart.access")

# Seconds a connection may stay silent (before a request, inside one, or idle between two on a
# keep-alive connection) before the server closes it and frees its thread.
DEFAULT_IDLE_TIMEOUT = 30.0


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
    it may describe hosts the operator meant to take out.
    """

    def __init__(
        self,
        path: str,
        initial: Inventory,
        *,
        prepare: Callable[[Inventory], Inventory] = lambda inv: inv,
    ) -> None:
        self.path = path
        self._prepare = prepare
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
                    self._inventory = self._prepare(load_inventory(self.path))
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

    def setup(self) -> None:
        super().setup()
        # http.server closes the connection when a read times out (idle keep-alive included).
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
    daemon_threads = True  # a slow client never keeps the process alive
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        api: Api,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.api = api
        self.idle_timeout = idle_timeout
        self.tls = tls
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An exception escaped a connection (a reset, a TLS error mid-request): one JSON event
        instead of socketserver's traceback on stderr, where the log is JSON lines."""
        exc = sys.exc_info()[1]
        client = client_address[0] if client_address else None
        if isinstance(exc, OSError):
            log.debug("api.connection.error", client=client, error=str(exc))
        else:
            log.exception("api.connection.error", client=client)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake happens here, in the connection's own thread and under the
        socket timeout (never in the accepting thread, where a silent client would stall
        every other); a failed handshake (an old protocol, not TLS at all) closes the
        connection."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.idle_timeout)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset
            log.debug("api.tls.refused", client=client_address[0], reason=str(exc))
            return
        with conn:
            super().finish_request(conn, client_address)


class ApiServer:
    """The API on a socket, served from a background thread (``start``/``stop``)."""

    def __init__(
        self,
        api: Api,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.httpd = ApiHttpServer((host, port), api, idle_timeout=idle_timeout, tls=tls)
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
    observe_ttl: float = 5.0,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).

    ``tls`` (see ``tls_context``): serve HTTPS instead of HTTP."""
    from harestart.http.jobs import BackgroundRestarter, CachedObserver

    def prepare(inv: Inventory) -> Inventory:
        return inv.accepting_new_host_keys() if accept_new_host_keys else inv

    stopping = threading.Event()
    restarter = BackgroundRestarter(inventory.path)
    api = Api(
        tokens=tokens,
        inventory=InventoryFile(inventory.path, prepare(inventory), prepare=prepare),
        restarter=restarter,
        observer=CachedObserver(observe_ttl),
        shutting_down=stopping.is_set,
    )
    try:
        server = ApiServer(api, host, port, idle_timeout=idle_timeout, tls=tls)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if not _is_loopback(host) and tls is None:
        log.warning(
            "api.not_loopback",
            host=host,
            note="tokens travel in clear text: use --tls-cert/--tls-key or a TLS reverse proxy",
        )
    with _stop_signals(stopping) as signals:
        server.start()
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
        try:
            _until_stopped(stopping, signals, restarter)
        finally:
            server.stop()
    log.info("api.stopped")
    return int(ExitCode.OK)


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
