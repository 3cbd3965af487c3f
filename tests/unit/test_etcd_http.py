"""etcd3gw's calls on one urllib3 pool (harestart/adapters/etcd_http.py): what etcd3gw sends and
reads, its errors as etcd3gw raises them, and everything else left to requests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import etcd3gw
import pytest
import requests
from etcd3gw import exceptions as etcd_exc

from harestart.adapters.etcd_http import PooledSession

WAIT = 10.0


class Gateway(BaseHTTPRequestHandler):
    """etcd's JSON gateway as far as these tests go: /version, and POSTs answered from
    ``server.answers`` by path (status, document); ``/v3/kv/frozen`` never answers."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(200, {"etcdserver": "3.5.16", "etcdcluster": "3.5.0"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.seen.append((self.path, self.headers["Content-Type"], json.loads(body)))
        if self.path == "/v3/kv/frozen":
            server.release.wait(WAIT)
            return
        status, doc = server.answers.get(self.path, (200, {}))
        self._answer(status, doc)

    def _answer(self, status: int, doc: object) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def gateway() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    server.daemon_threads = True
    server.seen, server.answers, server.release = [], {}, threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def client(port: int, *, timeout: float | None = None) -> Any:
    c = etcd3gw.client(host="127.0.0.1", port=port, timeout=timeout)
    c.session.trust_env = False
    c.session = PooledSession(c.session, c.base_url, 4)  # type: ignore[assignment]  # what it stands in for
    return c


def test_etcd3gw_calls_go_through_the_pool_with_their_json(gateway: Any) -> None:
    port = gateway.server_address[1]
    gateway.answers["/v3/kv/range"] = (200, {"kvs": [{"key": "eA==", "value": "eQ=="}]})
    c = client(port)
    assert c.get("x") == [b"y"]
    [(path, kind, doc)] = gateway.seen
    assert (path, kind, doc["key"]) == ("/v3/kv/range", "application/json", "eA==")
    assert c.session._pool is not None and c.session._pool.num_connections == 1
    c.get("x")
    assert c.session._pool.num_connections == 1  # the connection is reused


def test_an_error_status_is_etcd3gws_exception_with_the_services_words(gateway: Any) -> None:
    gateway.answers["/v3/kv/put"] = (400, {"error": "etcdserver: requested lease not found"})
    c = client(gateway.server_address[1])
    with pytest.raises(etcd_exc.Etcd3Exception, match="Bad Request") as raised:
        c.post(c.get_url("/kv/put"), json={"key": "eA==", "value": "eQ==", "lease": 1234})
    assert "requested lease not found" in (raised.value.detail_text or "")


def test_a_service_that_does_not_answer_is_a_timeout(gateway: Any) -> None:
    c = client(gateway.server_address[1], timeout=0.3)
    with pytest.raises(etcd_exc.ConnectionTimeoutError):
        c.post(c.get_url("/kv/frozen"), json={"key": "eA=="})


def test_a_closed_port_is_a_failed_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    with pytest.raises(etcd_exc.ConnectionFailedError):
        client(port, timeout=2.0).get("x")


def test_https_a_proxy_and_other_arguments_are_left_to_requests(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = requests.Session()
    assert PooledSession(session, "https://127.0.0.1:2379", 4)._pool is None
    session.proxies = {"http": "http://proxy.invalid:3128"}
    assert PooledSession(session, "http://127.0.0.1:2379", 4)._pool is None
    sent: list[dict[str, Any]] = []
    direct = requests.Session()
    direct.trust_env = False
    monkeypatch.setattr(direct, "post", lambda url, **kw: sent.append(kw))
    pooled = PooledSession(direct, f"http://127.0.0.1:{gateway.server_address[1]}", 4)
    pooled.post(f"http://127.0.0.1:{gateway.server_address[1]}/v3/watch", json={}, stream=True)
    assert sent == [{"json": {}, "stream": True}] and gateway.seen == []
