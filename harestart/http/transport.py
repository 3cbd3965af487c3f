"""The HTTP transport of ``harestart serve``: uvicorn (h11) and the few guards it lacks.

uvicorn parses HTTP/1.1 with h11 (conflicting ``Content-Length`` headers, bad request lines
and headers are refused with 400 before the API sees anything), serves TLS through asyncio,
keeps idle connections in one event loop (they hold no thread) and closes keep-alive
connections silent for ``idle_timeout``. On top of it, this module adds what it lacks:

- **a deadline for a whole request** (``request_timeout``, 10 s by default): from the first
  byte of a request until its last body byte; a client still sending then (a slowloris
  trickling one header byte every few seconds, a body that never comes) is answered 400 and
  closed. A connection that never sends a byte is closed after ``idle_timeout``, and a TLS
  handshake must end within ``request_timeout`` (asyncio's ``ssl_handshake_timeout``).
- **a cap on open connections** (``max_connections``), decided when a connection is accepted,
  before any TLS handshake. At the cap, a new connection takes the place of the one whose
  request has been arriving longest, or that said nothing since it connected, over
  ``EVICT_AFTER`` (a trickling client's, cut with a 400; a silent one's, closed); when there
  is none (the connections are idle between requests or being answered), the new one gets a
  fixed 503 (plain HTTP) or is closed at once (TLS), and counts for nothing. ``serve`` sizes
  the cap below the process's open-files limit (``connection_cap``), so descriptors stay free
  for the SSH and MySQL sessions of a restart in flight and ``accept`` never fails with "Too
  many open files" (asyncio 3.11 spins on that error: it schedules a retry for every accept
  attempt of its loop).
- malformed requests that h11 refuses are answered with the API's JSON fault, not uvicorn's
  text, and logged and counted like every other answer.

``_GuardedLoop`` is the event loop that applies the cap and the handshake deadline (one
override of asyncio's per-connection accept step); ``GuardedProtocol`` is uvicorn's h11
protocol with the request deadline and the JSON 400; ``ApiServer`` runs them in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from harestart import __version__
from harestart.errors import UsageError
from harestart.http.api import Api, Response, fault_response, request_id_for
from harestart.http.asgi import DEFAULT_MAX_WORKERS, WORKER_WAIT, ApiApp
from harestart.views.metrics import Metrics

log = structlog.get_logger("harestart.http.server")
access = structlog.get_logger("harestart.access")

DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent between requests
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds for a whole request (headers and body) to arrive
DEFAULT_MAX_CONNECTIONS = 1000  # connections open at once; more get 503 (TLS: closed)
# Descriptors kept free beside the connections (at least this, or a quarter of the limit): a
# restart's SSH and MySQL sessions, the background observations (two sessions per node),
# journals, locks and logs.
FD_RESERVE = 64
# The listen backlog: clients that connect at the same moment (those a 503 closed reconnect
# together) would otherwise see SYNs dropped and pay 1 s each.
LISTEN_BACKLOG = 128
MAX_HEAD = 64 * 1024  # bytes of request line and headers (h11 answers 400 beyond)
# Seconds a request must have been arriving before a new connection at the cap may take its
# place (a client sending at any normal pace has sent it whole long before).
EVICT_AFTER = 1.0
# Seconds a graceful stop waits for requests being answered before it cancels them.
STOP_GRACE = 5.0


# --- sizing --------------------------------------------------------------------------------


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (what any process may do); the new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(requested: int, open_files: int, reserve: int | None = None) -> int:
    """The connection cap ``serve`` uses: ``requested`` (``--max-connections``), lowered so
    that ``reserve`` descriptors (default: FD_RESERVE or a quarter of the limit, the larger)
    stay free under the open-files limit. UsageError (exit 2) when it leaves no room."""
    if reserve is None:
        reserve = max(FD_RESERVE, open_files // 4)
    room = open_files - reserve
    if room < 1:
        raise UsageError(
            f"the open-files limit ({open_files}) leaves no room for connections beside the "
            f"{reserve} descriptors kept for restarts; raise it (ulimit -n, LimitNOFILE=)"
        )
    return min(requested, room)


# --- the guards ------------------------------------------------------------------------------


def raw_answer(resp: Response, request_id: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for the transport's own faults
    (sent outside h11: before a request was parsed, or after it failed)."""
    phrase = HTTPStatus(resp.status).phrase
    head = [
        f"HTTP/1.1 {resp.status} {phrase}",
        f"Server: harestart/{__version__}",
        "Content-Type: application/json",
        f"Content-Length: {len(resp.body)}",
        f"X-Request-Id: {request_id}",
        *(f"{name}: {value}" for name, value in extra),
        "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + resp.body


@dataclass
class ConnectionGuard:
    """The limits of one server and its count of open connections (touched by its event
    loop's thread only)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    count: Callable[[str, str, int], None] = field(default=lambda method, route, code: None)
    open: int = 0
    refused: int = 0  # connections refused over the cap since the start
    # connections whose request is arriving -> since when (loop time): its first byte, or
    # its connection when it has sent nothing yet
    arriving: dict[GuardedProtocol, float] = field(default_factory=dict)

    def admit(self, now: float) -> bool:
        """Count a new connection in, if under the cap or once room was made for it."""
        if self.open >= self.max_connections and not self._make_room(now):
            self.refused += 1
            return False
        self.open += 1
        return True

    def _make_room(self, now: float) -> bool:
        """At the cap: cut the connection whose request has been arriving longest (or that
        has said nothing since it connected), if that is over EVICT_AFTER: a trickling or
        silent client's; never one being answered, nor one idle between requests, nor a
        request arriving at a normal pace. False when there is none."""
        if not self.arriving:
            return False
        victim = min(self.arriving, key=self.arriving.__getitem__)
        if now - self.arriving[victim] < EVICT_AFTER:
            return False
        victim.cut(
            "the server is at its connection limit and this request was the slowest to arrive"
        )
        return True

    def release(self) -> None:
        self.open -= 1

    def refuse(self, conn: socket.socket, *, tls: bool) -> None:
        """Over the cap: a fixed 503 (nothing is read) on plain HTTP, a close on TLS (no
        answer can be sent before a handshake, and it is not worth one)."""
        client = _peer(conn)
        self.count("OTHER", "unmatched", 503)  # before the answer, as asgi.py counts
        with contextlib.suppress(OSError):
            if not tls:
                rid = request_id_for(None)
                resp = fault_response(
                    503,
                    f"the server has {self.max_connections} connections open, its limit; retry",
                    rid,
                )
                conn.setblocking(False)
                conn.send(raw_answer(resp, rid, (("Retry-After", "1"),)))
        conn.close()
        access.info("api.request", status=503, client=client, busy=True, connections=self.open)

    def answer(self, transport: asyncio.BaseTransport, status: int, message: str) -> None:
        """The transport's own fault on a connection whose request failed or timed out."""
        rid = request_id_for(None)
        self.count("OTHER", "unmatched", status)  # before the answer, as asgi.py counts
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(raw_answer(fault_response(status, message, rid), rid))
        transport.close()
        peer = transport.get_extra_info("peername")
        access.info(
            "api.request",
            request_id=rid,
            status=status,
            client=peer[0] if peer else None,
            error=message,
        )


def _peer(conn: socket.socket) -> str | None:
    try:
        return str(conn.getpeername()[0])
    except OSError:
        return None


class _GuardedLoop(asyncio.SelectorEventLoop):
    """asyncio's loop with the connection cap applied where a connection is accepted (before
    a TLS handshake), and TLS handshakes bounded by the request deadline."""

    def __init__(self, guard: ConnectionGuard) -> None:
        super().__init__()
        self.guard = guard

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs["ssl_handshake_timeout"] = self.guard.request_timeout
        return await super().create_server(*args, **kwargs)

    async def _accept_connection2(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        conn: socket.socket,
        extra: dict[str, Any],
        sslcontext: ssl.SSLContext | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """asyncio's step for one accepted connection (3.11-3.13: protocol, transport, TLS
        handshake), behind the cap; the count is given back by the protocol when its
        connection ends, or here when it never started (a failed handshake)."""
        if not self.guard.admit(self.time()):
            self.guard.refuse(conn, tls=sslcontext is not None)
            return
        made: list[GuardedProtocol] = []

        def factory() -> asyncio.Protocol:
            protocol = protocol_factory()
            if isinstance(protocol, GuardedProtocol):
                made.append(protocol)
            return protocol

        await super()._accept_connection2(  # type: ignore[misc]
            factory, conn, extra, sslcontext, *args, **kwargs
        )
        if not made or not made[0].started:
            self.guard.release()


class _RecordingConnection(h11.Connection):
    """h11's connection, keeping the error it raised (uvicorn answers without it)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with the request deadline, the idle close of a connection that
    never spoke, and the API's JSON fault for what h11 refuses."""

    guard: ClassVar[ConnectionGuard]  # set on the subclass each ApiServer makes

    started = False  # connection_made ran: connection_lost gives the count back
    _deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _RecordingConnection(h11.SERVER, MAX_HEAD)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.started = True
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer after a response only: a connection that never
        # sends a byte would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.guard.idle_timeout, self.timeout_keep_alive_handler
        )
        # its request is arriving from now on, as far as the cap is concerned: a connection
        # that stays silent can give its place to a new one
        self.guard.arriving[self] = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        if self.started:
            self.started = False
            self.guard.release()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a request: the deadline runs from here
        super().data_received(data)
        self._disarm_when_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already begun (its first bytes buffered in h11) runs on the
        # same deadline as one arriving now.
        if self.conn.their_state is h11.SEND_BODY or (
            self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        ):
            if self._deadline is None and not self.transport.is_closing():
                self._arm()
        else:
            self._disarm_when_arrived()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.guard.request_timeout, self._deadline_passed)
        self.guard.arriving.setdefault(self, self.loop.time())

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.arriving.pop(self, None)

    def _disarm_when_arrived(self) -> None:
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the whole request is here (or the connection is done)

    def _deadline_passed(self) -> None:
        timeout = self.guard.request_timeout
        self.cut(f"the request did not arrive within {timeout:g} s (headers and body)")

    def cut(self, why: str) -> None:
        """Answer the request still arriving 400 and close the connection (one that never
        sent a byte is closed without an answer)."""
        silent = self._deadline is None
        self._disarm()
        if self.transport.is_closing():
            return
        if silent:
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.guard.answer(self.transport, 400, why)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request (a malformed request line or header, conflicting
        Content-Length headers, an unsupported Transfer-Encoding, a head over MAX_HEAD)."""
        self._disarm()
        error = self.conn.error if isinstance(self.conn, _RecordingConnection) else None
        why = str(error) if error is not None else msg
        if error is not None and error.error_status_hint == 431:
            why = f"request line and headers over {MAX_HEAD} bytes"
        self.guard.answer(self.transport, 400, f"the request is not valid HTTP/1.1: {why}")


def _quiet_uvicorn() -> None:
    """uvicorn logs through the standard logging module, which without a handler prints
    warnings on stderr between serve's JSON lines; the access log and the faults above say
    the same in JSON."""
    quiet = logging.getLogger("uvicorn")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False


class ApiServer:
    """The API on a socket (bound when made), served by uvicorn from a background thread
    (``start``/``stop``)."""

    def __init__(
        self,
        api: Api,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        tls: ssl.SSLContext | None = None,
        worker_wait: float = WORKER_WAIT,
        metrics: Metrics | None = None,
    ) -> None:
        _quiet_uvicorn()
        self.app = ApiApp(api, max_workers=max_workers, worker_wait=worker_wait, metrics=metrics)
        self.guard = ConnectionGuard(
            max_connections, request_timeout, idle_timeout, count=self.app.count_request
        )
        self.tls = tls
        self.backlog = LISTEN_BACKLOG
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=self.backlog)
        protocol = type("ApiProtocol", (GuardedProtocol,), {"guard": self.guard})
        config = uvicorn.Config(
            self.app,
            http=protocol,
            interface="asgi3",
            lifespan="off",
            log_config=None,
            access_log=False,  # harestart's access log is the app's (JSON)
            proxy_headers=False,  # the client address is the peer's, never a header's
            server_header=False,
            headers=[("Server", f"harestart/{__version__}")],
            timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # seconds, a float works
            timeout_graceful_shutdown=STOP_GRACE,  # type: ignore[arg-type]
            backlog=self.backlog,
            h11_max_incomplete_event_size=MAX_HEAD,
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def waiting(self) -> int:
        """Requests waiting for a worker right now."""
        return self.app.waiting

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._run, name="api-http", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        def loop_factory() -> asyncio.AbstractEventLoop:
            loop = _GuardedLoop(self.guard)
            loop.set_exception_handler(self.on_loop_error)
            return loop

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self._server.serve(sockets=[self._sock]))

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self._sock.close()
        self.app.close()

    @staticmethod
    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What asyncio reports from a connection (a reset, a TLS error, a full descriptor
        table): one JSON event instead of a traceback on stderr, where the log is JSON."""
        exc = context.get("exception")
        if isinstance(exc, OSError):
            log.debug("api.connection.error", error=str(exc), what=context.get("message"))
        else:
            log.error("api.connection.error", error=repr(exc), what=context.get("message"))
