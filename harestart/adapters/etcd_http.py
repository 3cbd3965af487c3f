"""etcd3gw's HTTP calls on one urllib3 connection pool, without requests' per-call work.

etcd3gw's client (the one tooz's driver makes, and ``coordination_etcd`` shares) sends every
etcd call through a ``requests.Session``: a POST of a JSON body to the gRPC gateway, whose JSON
answer it reads. requests spends most of a call's CPU on what these calls never use: merging
the session's settings into each request, its cookie jar, hooks, parsing the answer's headers
through the email package. At hundreds of groups that was most of harestart's own CPU against
etcd (``make bench-scale --etcd``: ~0.6 ms per call, 15 calls per group). ``PooledSession``
does those two calls (``post`` with ``json=``, ``get``) on urllib3 directly (requests' own
transport: same connection reuse, no retry, the same timeouts) and answers what etcd3gw reads
of a response (``status_code``, ``reason``, ``text``, ``json()``). Anything else (https, a
proxy, a streamed watch, any other argument) goes to the requests session it wraps, unchanged.

Its errors are requests' (``Timeout``, ``ConnectionError``), which etcd3gw turns into its own,
and tooz into its own, as before.
"""

from __future__ import annotations

import json
from typing import Any

import requests
import urllib3

__all__ = ["PooledSession"]


class _Answer:
    """What etcd3gw reads of a response."""

    def __init__(self, status: int, reason: str | None, body: bytes) -> None:
        self.status_code = status
        self.reason = reason or ""
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class PooledSession:
    """A ``requests.Session`` stand-in for one etcd endpoint (``base_url``) over plain http
    without a proxy: ``post(url, json=...)`` and ``get(url)`` on a urllib3 pool of ``size``
    connections; every other use goes to ``session``."""

    def __init__(self, session: requests.Session, base_url: str, size: int) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._pool: urllib3.HTTPConnectionPool | None = None
        url = urllib3.util.parse_url(base_url)
        proxied = bool(requests.utils.select_proxy(base_url, session.proxies))
        if url.scheme == "http" and url.host and not proxied:
            self._pool = urllib3.HTTPConnectionPool(
                url.host, url.port or 80, maxsize=size, block=False, retries=False
            )

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        path = self._path(url)
        if self._pool is None or path is None or set(kwargs) - {"timeout"}:
            return self._session.post(url, json=json, **kwargs)
        headers = {"Content-Type": "application/json"}
        return _send(self._pool, "POST", path, _dumps(json), headers, kwargs.get("timeout"))

    def get(self, url: str, **kwargs: Any) -> Any:
        path = self._path(url)
        if self._pool is None or path is None or set(kwargs) - {"timeout"}:
            return self._session.get(url, **kwargs)
        return _send(self._pool, "GET", path, None, {}, kwargs.get("timeout"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)  # mount, verify, cert, headers...

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._session.close()

    def _path(self, url: str) -> str | None:
        """``url``'s path when it is this endpoint's; else None."""
        if not url.startswith(self._base + "/"):
            return None
        return url[len(self._base) :]


def _send(
    pool: urllib3.HTTPConnectionPool,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: Any,
) -> _Answer:
    try:
        r = pool.urlopen(
            method,
            path,
            body=body,
            headers=headers,
            timeout=_timeout(timeout),
            retries=False,
            preload_content=True,
        )
    except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError in urllib3 2
        raise requests.exceptions.ConnectionError(str(exc)) from None
    except urllib3.exceptions.TimeoutError as exc:
        raise requests.exceptions.Timeout(str(exc)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.exceptions.ConnectionError(str(exc)) from None
    return _Answer(r.status, r.reason, r.data)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _timeout(timeout: Any) -> urllib3.Timeout:
    """requests' ``timeout``: None, seconds, or (connect, read)."""
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(connect=timeout, read=timeout)
