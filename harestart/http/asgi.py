"""The ASGI application ``serve`` runs under uvicorn: bytes of one request in, the pure
``Api.handle`` in a bounded thread pool, the answer out, one access-log line.

What HTTP/1.1 says about a request and the API does not (``harestart.http.api`` sees a parsed
``Request`` only) is checked here first: an HTTP version other than 1.0 and 1.1 (505), a
``Transfer-Encoding`` (400: bodies are small and carry ``Content-Length``; with one beside it,
request smuggling), a header that must appear once (``X-Auth-Token``, ``X-Request-Id``,
``Host``) repeated (400), a method HTTP does not know (501), a body over ``MAX_BODY`` (413,
left unread). h11 has already refused malformed request lines and headers and conflicting
``Content-Length`` headers (``harestart.http.transport``).

``Api.handle`` runs in one of ``max_workers`` threads (16 by default; it reads files and may
wait on the inventory). When every worker is busy a request waits for one at most
``worker_wait`` (0.25 s; at most ``WAITING_PER_WORKER`` per worker wait), then is answered 503
``serviceUnavailable`` and its connection closed: a pool stuck on slow requests answers at
once instead of queueing without bound. Connections themselves hold no worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from harestart.http.api import (
    MAX_BODY,
    Api,
    Request,
    Response,
    fault_response,
    parse_count,
    request_id_for,
    route_template,
)
from harestart.views.metrics import Metrics

access = structlog.get_logger("harestart.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_WORKERS = 16  # requests handled at once; more wait WORKER_WAIT, then get 503
# Seconds a request that found every worker busy waits for one before its 503, and how many may
# wait (per worker): a burst of short requests (50 clients polling 16 workers) is answered, not
# refused; a pool stuck on slow requests still answers 503 after this bound.
WORKER_WAIT = 0.25
WAITING_PER_WORKER = 4

HTTP_VERSIONS = frozenset({"1.0", "1.1"})
# Every method of RFC 9110, PATCH (RFC 5789) and QUERY (the httpbis draft) reaches the API, which
# answers 405 with Allow when the resource does not take it; another gets 501 notImplemented.
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
# Headers a request may carry once: two tokens or two ids could each be read by another hop.
SINGLE_HEADERS = ("x-auth-token", "authorization", "x-request-id", "host")


class Refused(Exception):
    """The request is refused before the API: answered with this fault, connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def http_problem(scope: Scope, headers: dict[str, list[str]]) -> Refused | None:
    """What HTTP/1.1 itself refuses in a request whose head h11 parsed."""
    version = str(scope.get("http_version", ""))
    if version not in HTTP_VERSIONS:
        return Refused(505, f"HTTP/{version[:10]} is not supported; send HTTP/1.1")
    method = str(scope["method"])
    if method not in METHODS:
        return Refused(501, f"the method {method[:20]!r} is not implemented")
    for name in SINGLE_HEADERS:
        if len(headers.get(name, ())) > 1:
            return Refused(400, f"repeated {_title(name)} header: send it once")
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            return Refused(
                400, "Transfer-Encoding with Content-Length is refused: send Content-Length only"
            )
        return Refused(400, "chunked bodies are not supported: send Content-Length")
    return None


def _title(name: str) -> str:
    return "-".join("ID" if part == "id" else part.capitalize() for part in name.split("-"))


class ApiApp:
    """The ASGI 3 application around ``api`` (see the module docstring)."""

    def __init__(
        self,
        api: Api,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        worker_wait: float = WORKER_WAIT,
        metrics: Metrics | None = None,
    ) -> None:
        self.api = api
        self.max_workers = max_workers
        self.worker_wait = worker_wait
        self.max_waiting = WAITING_PER_WORKER * max_workers
        self.metrics = metrics if metrics is not None else api.metrics
        self.waiting = 0  # requests waiting for a worker (the event loop's thread only)
        self._busy = 0
        self._freed: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="api-worker")

    def count_request(self, method: str, route: str, code: int) -> None:
        if self.metrics is not None:
            self.metrics.record_request(method, route, code)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.monotonic()
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            headers.setdefault(name, []).append(raw_value.decode("latin-1"))
        given_id = headers.get("x-request-id", [])
        rid = request_id_for(given_id[0] if len(given_id) == 1 else None)
        method = str(scope["method"])
        path = str(scope.get("raw_path", b"").decode("latin-1") or scope["path"])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        close = False
        try:
            request = await self._request(scope, headers, receive, rid, path, query)
        except Refused as exc:
            resp, close = fault_response(exc.status, exc.message, rid), True
        else:
            if request is None:
                return  # the client went away before its body arrived: nobody to answer
            close = request.body is None  # over MAX_BODY: the body stays unread
            resp, busy = await self._answer(request)
            close = close or busy
        # Counted before the answer goes out: a client that has its answer and then reads
        # /metrics sees its request counted (counted after, a loaded CI run saw it missing).
        self.count_request(method, route_template(path), resp.status)
        await self._send(send, resp, rid, close=close)
        access.info(
            "api.request",
            request_id=rid,
            method=method,
            path=path,
            query=query or None,
            status=resp.status,
            account=resp.account,
            bytes=len(resp.body),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            client=(scope.get("client") or (None,))[0],
            user_agent=next(iter(headers.get("user-agent", ())), None),
        )

    async def _request(
        self,
        scope: Scope,
        headers: dict[str, list[str]],
        receive: Receive,
        rid: str,
        path: str,
        query: str,
    ) -> Request | None:
        problem = http_problem(scope, headers)
        if problem is not None:
            raise problem
        raw_length = (headers.get("content-length") or ["0"])[0]
        length = parse_count(raw_length)
        if length is None:  # h11 checked the digits; kept for what it might let through
            raise Refused(400, f"invalid Content-Length {raw_length[:40]!r}")
        body: bytes | None = None
        if length <= MAX_BODY:
            body = b""
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                more = bool(message.get("more_body", False))
        return Request(
            method=str(scope["method"]),
            path=path,
            query=query,
            headers={name: values[0] for name, values in headers.items()},
            body=body,
            body_length=length,
            request_id=rid,
        )

    async def _answer(self, request: Request) -> tuple[Response, bool]:
        """``Api.handle`` in a worker; (a 503, True) when none is free in time."""
        if self._busy >= self.max_workers:
            why = await self._wait_for_worker()
            if why is not None:
                resp = fault_response(
                    503,
                    f"the server is busy: all {self.max_workers} workers are answering "
                    f"requests ({why}); retry",
                    request.request_id,
                    (("Retry-After", "1"),),
                )
                return resp, True
        self._busy += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self.api.handle, request)
        future.add_done_callback(lambda _: self._free_worker())
        # shielded: a cancelled request (the server stopping) leaves the worker counted
        # until its thread really ends
        return await asyncio.shield(future), False

    async def _wait_for_worker(self) -> str | None:
        """Wait up to worker_wait for a free worker; None when one is free, else why not."""
        if self.waiting >= self.max_waiting:
            return f"{self.max_waiting} requests wait for one"
        self.waiting += 1
        deadline = time.monotonic() + self.worker_wait
        try:
            while self._busy >= self.max_workers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return f"waited {self.worker_wait:g} s for one"
                if self._freed is None:
                    self._freed = asyncio.Event()
                try:
                    await asyncio.wait_for(self._freed.wait(), left)
                except TimeoutError:
                    return f"waited {self.worker_wait:g} s for one"
            return None
        finally:
            self.waiting -= 1

    def _free_worker(self) -> None:
        self._busy -= 1
        if self._freed is not None:
            freed, self._freed = self._freed, None
            freed.set()  # every waiter looks again; the first to run takes the worker

    @staticmethod
    async def _send(send: Send, resp: Response, rid: str, *, close: bool) -> None:
        names = {name.lower() for name, _ in resp.headers}
        out: list[tuple[bytes, bytes]] = []
        if "content-type" not in names:
            out.append((b"Content-Type", b"application/json"))
        out += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in resp.headers]
        out.append((b"Content-Length", str(len(resp.body)).encode()))
        out.append((b"X-Request-Id", rid.encode()))
        if close:
            out.append((b"Connection", b"close"))
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        await send({"type": "http.response.body", "body": resp.body})
