"""Issue #21's probes of ``serve``'s transport, each as a hostile client would send it, against a
real server on 127.0.0.1 (in process; the slowloris and connection-cap probes also against a
real ``harestart serve`` process in tests/unit/test_http_serve_hostile.py). Every test here
failed on the main branch before #21 (its docstring says how).

Deadlines in the tests are generous (30 s); no test asserts how long anything took: the
server's own deadlines are set short (``request_timeout``) so that what the test waits for
happens soon, and the test waits on the event itself."""

from __future__ import annotations

import getpass
import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harestart.engine.sequencer.waiting import poll_until
from harestart.engine.state.lock import GroupLock
from harestart.errors import UsageError
from harestart.http.api import json_depth, parse_tokens
from harestart.http.jobs import BackgroundRestarter
from harestart.http.server import ApiServer, tls_context
from harestart.http.transport import FD_RESERVE, connection_cap
from harestart.views.metrics import Metrics

from .test_api import (
    DETAIL,
    LIST,
    OPERATOR_TOKEN,
    SEED_ACCOUNT,
    SEED_HA,
    SEED_TOKEN,
    BlockingRestart,
    Env,
    _quiet_logs,  # noqa: F401 (autouse fixture)
    fault,
    make_env,
)
from .test_tls import self_signed

WAIT = 30.0  # seconds: the most any socket read in these tests waits


def served(tmp_path: Path, **server: object) -> Env:
    e, _ = make_env(tmp_path)
    e.server.stop()
    e.server = ApiServer(e.api, **server).start()  # type: ignore[arg-type]
    return e


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = served(tmp_path)
    try:
        yield e
    finally:
        e.server.stop()


def exchange(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection; the answer until the server closes or it is whole."""
    with socket.create_connection(address, timeout=WAIT) as s:
        s.sendall(raw)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply) < _whole(reply):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return parse(reply)


def _whole(reply: bytes) -> int:
    head, _, _ = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(reply) + 1  # no length: read until closed


def parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", reply  # a real status line, whatever the request said
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers, body


class Trickler:
    """``n`` connections each sending ``payload`` one byte at a time, every ``every`` seconds,
    until the server closes them; ``sent`` is set once each has sent a few bytes."""

    def __init__(
        self, address: tuple[str, int], n: int, payload: bytes, every: float = 0.2
    ) -> None:
        self.address, self.payload, self.every = address, payload, every
        self.answers: list[bytes] = []
        self.started = threading.Semaphore(0)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._one, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _one(self) -> None:
        with socket.create_connection(self.address, timeout=WAIT) as s:
            s.settimeout(self.every)
            answer = b""
            for i, byte in enumerate(self.payload):
                if i == 3:
                    self.started.release()
                if self.stop.is_set():
                    break
                try:
                    s.send(bytes([byte]))
                    chunk = s.recv(65536)  # waits `every` for what the server says
                except TimeoutError:
                    continue
                except OSError:
                    break  # reset by the server
                if not chunk:
                    break  # closed by the server
                answer += chunk
            self.answers.append(answer or b"<closed>")

    def wait_started(self) -> None:
        for _ in self.threads:
            assert self.started.acquire(timeout=WAIT), "a trickling connection never started"

    def join(self) -> list[bytes]:
        for t in self.threads:
            t.join(WAIT * 2)
        return self.answers


# --- probe 1: slowloris -----------------------------------------------------------------------


def test_sixteen_slowloris_connections_do_not_lock_the_api_out(tmp_path: Path) -> None:
    """#21 probe 1: 16 connections trickling a header byte at a time made every real request
    answer 503 (all 16 workers held by them) for as long as they trickled. Now a real request
    is answered 200 while they trickle, and each of them gets 400 and is closed at the request
    deadline, whatever it still sends."""
    e = served(tmp_path, max_workers=16, request_timeout=2.0)
    payload = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode() + b"a" * 10_000
    slow = Trickler(e.server.address, 16, payload)
    try:
        slow.wait_started()
        assert e.request("GET", LIST)[0] == 200  # while all 16 still trickle
        answers = slow.join()
    finally:
        slow.stop.set()
        e.server.stop()
    assert len(answers) == 16
    for answer in answers:  # every one was cut by the server, long before its 10,000 bytes
        status, headers, body = parse(answer)
        assert status == 400 and headers["connection"] == "close"
        assert "did not arrive within 2 s" in fault(body)["message"]


def test_a_trickling_body_is_cut_at_the_request_deadline(tmp_path: Path) -> None:
    """#21 probe 1 (the body): a declared body sent a byte at a time never finishes a request;
    the deadline covers the body as well as the headers."""
    e = served(tmp_path, request_timeout=1.0)
    head = (
        f"POST {DETAIL}/action HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n"
        "Content-Length: 8000\r\n\r\n"
    ).encode()
    slow = Trickler(e.server.address, 1, head + b" " * 8000, every=0.05)
    try:
        answers = slow.join()
    finally:
        slow.stop.set()
        e.server.stop()
    status, _, body = parse(answers[0])
    assert status == 400 and "did not arrive within 1 s" in fault(body)["message"]
    assert e.restarter.started == []


def test_two_trickled_tls_client_hellos_do_not_take_two_workers(tmp_path: Path) -> None:
    """#21 probe 1 over TLS: with --max-workers 2, two connections sending a ClientHello a
    byte at a time held both workers in their handshakes. Now handshakes hold no worker, a
    real HTTPS request is answered meanwhile, and the handshakes end at the deadline."""
    cert, key = self_signed(tmp_path)
    e = served(tmp_path, max_workers=2, request_timeout=2.0, tls=tls_context(str(cert), str(key)))
    hello = bytes.fromhex("16030100c8010000c40303") + bytes(range(200))
    slow = Trickler(e.server.address, 2, hello)
    try:
        slow.wait_started()
        c = http.client.HTTPSConnection(
            *e.server.address, timeout=WAIT, context=ssl.create_default_context(cafile=str(cert))
        )
        c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
        assert c.getresponse().status == 200  # while both still trickle
        c.close()
        answers = slow.join()
    finally:
        slow.stop.set()
        e.server.stop()
    assert answers == [b"<closed>", b"<closed>"]  # closed by the server, nothing answered


# --- probe 2: a cap on connections -----------------------------------------------------------


def test_connections_over_the_cap_get_503_and_the_cap_is_given_back(tmp_path: Path) -> None:
    """#21 probe 2: connections were never capped (376 idle ones under ulimit -n 256 took
    every descriptor; new requests timed out). Over --max-connections a new connection gets a
    503 at once, and a closed connection frees its place."""
    e = served(tmp_path, max_connections=8)
    idle = [socket.create_connection(e.server.address, timeout=WAIT) for _ in range(8)]
    try:
        # the 8 are accepted and counted (each answers a request, then stays open)
        for s in idle:
            s.sendall(
                f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n\r\n".encode()
            )
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        status, headers, body = exchange(e.server.address, b"")
        assert status == 503 and headers["connection"] == "close"
        assert "8 connections open, its limit" in fault(body)["message"]
        assert e.server.guard.refused >= 1
        idle.pop().close()
        assert _eventually_200(e)  # the closed connection's place is free again
    finally:
        for s in idle:
            s.close()
        e.server.stop()


def test_at_the_cap_a_new_client_takes_the_place_of_the_slowest_trickler(
    tmp_path: Path,
) -> None:
    """#21 probes 1 and 2 together: a slowloris flood that fills the cap would lock every new
    client out until its connections are cut at the deadline. A new connection at the cap
    takes the place of the request that has been arriving longest (over a second), which is
    answered 400; the new client is answered 200."""
    e = served(tmp_path, max_connections=4, request_timeout=WAIT)
    payload = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode() + b"a" * 10_000
    slow = Trickler(e.server.address, 4, payload, every=0.3)
    try:
        slow.wait_started()
        # the 4 trickling requests fill the cap; once they have been arriving over EVICT_AFTER
        # a new client takes the place of the oldest
        poll_until(
            lambda: len(e.server.guard.arriving) == 4 or None, what="4 arriving", timeout=WAIT
        )
        assert _eventually_200(e)  # a new client, at the cap, answered
        poll_until(lambda: slow.answers or None, what="a trickler cut", timeout=WAIT)
    finally:
        slow.stop.set()
        slow.join()
        e.server.stop()
    status, _, body = parse(slow.answers[0])
    assert status == 400 and "connection limit" in fault(body)["message"]


def test_at_the_cap_a_new_client_takes_the_place_of_a_silent_connection(
    tmp_path: Path,
) -> None:
    """#21 probe 2 with connections that never send a byte (a cheaper slowloris): they held
    their place until the idle timeout. One silent for over a second gives it to a new client
    and is closed without an answer."""
    e = served(tmp_path, max_connections=4)
    silent = [socket.create_connection(e.server.address, timeout=WAIT) for _ in range(4)]
    try:
        poll_until(lambda: e.server.guard.open == 4 or None, what="4 open", timeout=WAIT)
        assert _eventually_200(e)
        closed = [s for s in silent if _closed_by_server(s)]
        assert len(closed) >= 1
    finally:
        for s in silent:
            s.close()
        e.server.stop()


def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _eventually_200(e: Env) -> bool:
    """A GET is answered 200 once the server has seen a closed connection go (the close
    reaches its loop a moment after the client's)."""

    def ok() -> bool | None:
        try:
            return e.request("GET", LIST)[0] == 200 or None
        except (ConnectionError, http.client.HTTPException):
            return None

    return bool(poll_until(ok, what="a 200 under the cap", timeout=WAIT))


def test_the_cap_leaves_descriptors_for_a_restart() -> None:
    """#21 probe 2: the cap is sized below the open-files limit, a reserve kept free for the
    SSH and MySQL sessions of a restart in flight; no room at all is a usage error."""
    assert connection_cap(1000, 1_048_576) == 1000
    assert connection_cap(1000, 1024) == 768  # a quarter kept
    assert connection_cap(1000, 256) == 256 - FD_RESERVE  # at least FD_RESERVE kept
    assert connection_cap(1000, 256, reserve=200) == 56
    with pytest.raises(UsageError, match="open-files limit"):
        connection_cap(1000, FD_RESERVE)


# --- probe 3: strict HTTP/1.1 ------------------------------------------------------------------

GET_LIST = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n"


def test_two_different_content_lengths_are_refused(env: Env) -> None:
    """#21 probe 3: two different Content-Length headers: the first won (RFC 9112 says reject:
    a proxy reading the other one would see another request smuggled in the body)."""
    raw = (
        f"POST {DETAIL}/action HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n"
        'Content-Length: 15\r\nContent-Length: 2\r\n\r\n{"restart": {}}'
    )
    status, headers, body = exchange(env.server.address, raw.encode())
    assert status == 400 and headers["connection"] == "close"
    assert "conflicting Content-Length" in fault(body)["message"]
    assert env.restarter.started == []


def test_transfer_encoding_beside_content_length_is_refused(env: Env) -> None:
    """#21 probe 3: Transfer-Encoding with Content-Length (the classic smuggling pair)."""
    raw = (
        f"POST {DETAIL}/action HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n"
        "Content-Length: 20\r\nTransfer-Encoding: chunked\r\n\r\n"
        'f\r\n{"restart": {}}\r\n0\r\n\r\n'
    )
    status, headers, body = exchange(env.server.address, raw.encode())
    assert status == 400 and headers["connection"] == "close"
    assert "Transfer-Encoding with Content-Length" in fault(body)["message"]
    assert env.restarter.started == []


def test_an_unknown_http_version_gets_505_with_a_status_line(env: Env) -> None:
    """#21 probe 3: ``GET / HTTP/9.9`` got a bare JSON body with no status line."""
    status, headers, body = exchange(
        env.server.address, GET_LIST.replace("HTTP/1.1", "HTTP/9.9", 1).encode() + b"\r\n"
    )
    assert status == 505 and headers["connection"] == "close"
    assert fault(body)["name"] == "httpVersionNotSupported"


def test_a_request_that_is_not_http_gets_a_json_400(env: Env) -> None:
    status, _, body = exchange(env.server.address, b"\x16\x03\x01 hello\r\n\r\n")
    assert status == 400 and "not valid HTTP/1.1" in fault(body)["message"]


def test_head_on_a_get_route_is_answered_like_get_without_a_body(env: Env) -> None:
    """#21 probe 3: HEAD on a GET route got 405."""
    status, headers, body = exchange(
        env.server.address,
        GET_LIST.replace("GET", "HEAD", 1).encode() + b"Connection: close\r\n\r\n",
    )
    assert status == 200 and body == b""
    listed = env.request("GET", LIST)  # the same answer's length, with its body
    assert int(headers["content-length"]) == len(listed[2])
    status, headers, _ = env.request("POST", LIST, "{}")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_a_repeated_auth_token_header_is_refused(env: Env) -> None:
    """#21 probe 3: two X-Auth-Token headers: the last won (a proxy checking the first would
    let the second through)."""
    raw = GET_LIST + "X-Auth-Token: token-of-account-5678-aaaaaaaa\r\n\r\n"
    status, _, body = exchange(env.server.address, raw.encode())
    assert status == 400 and "repeated X-Auth-Token header" in fault(body)["message"]


# --- probe 4: input ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["[" * 8000, '{"restart": ' * 600 + "{}" + "}" * 600])
def test_a_deeply_nested_body_is_a_400_not_a_500(env: Env, body: str) -> None:
    """#21 probe 4: an authenticated POST of 8,000 nested ``[`` was a 500 (RecursionError in
    the body parser)."""
    status, _, resp = env.request("POST", f"{DETAIL}/action", body)
    assert status == 400, resp
    assert "nests deeper than" in fault(resp)["message"]
    assert env.restarter.started == []


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth('{"restart": {}}') == 2
    assert json_depth('{"a": "[[[[{{{{"}') == 1
    assert json_depth('{"a": "\\"[[["}') == 1
    assert json_depth("[" * 8000) == 8000


# --- probe 5: tenancy --------------------------------------------------------------------------


def test_metrics_need_an_operator_token(env: Env) -> None:
    """#21 probe 5: /metrics without any token listed every account's groups and states."""
    env.api.metrics = Metrics(http=True)
    status, _, body = env.request("GET", "/metrics", token=None)
    assert status == 401 and SEED_HA.encode() not in body
    status, _, body = env.request("GET", "/metrics")  # a tenant's token
    assert status == 403 and "operator" in fault(body)["message"]
    assert env.request("GET", "/metrics", token=OPERATOR_TOKEN)[0] == 200


def test_metrics_take_an_operators_token_as_a_bearer_for_prometheus(env: Env) -> None:
    """Prometheus 2.42 (Debian 12's) sends a token only as ``Authorization: Bearer`` (its
    scrape setting ``authorization``), so /metrics takes it there too, checked as an
    X-Auth-Token is; other routes keep to X-Auth-Token."""
    env.api.metrics = Metrics(http=True)

    def metrics(authorization: str, token: str | None = None) -> tuple[int, bytes]:
        status, _, body = env.request(
            "GET", "/metrics", token=token, headers={"Authorization": authorization}
        )
        return status, body

    status, body = metrics(f"Bearer {OPERATOR_TOKEN}")
    assert status == 200 and b"harestart_restarts_total" in body
    assert metrics(f"bearer {OPERATOR_TOKEN}")[0] == 200  # the scheme is case-insensitive
    status, body = metrics(f"Bearer {SEED_TOKEN}")  # a tenant's
    assert status == 403 and "operator" in fault(body)["message"]
    status, body = metrics("Bearer not-a-token-0123456789")
    assert status == 401 and "not valid" in fault(body)["message"]
    status, body = metrics(f"Basic {OPERATOR_TOKEN}")
    assert status == 401 and "Bearer TOKEN" in fault(body)["message"]
    assert OPERATOR_TOKEN not in body.decode()
    status, body = metrics(f"Bearer {OPERATOR_TOKEN}", token=OPERATOR_TOKEN)  # both
    assert status == 400 and "send the token once" in fault(body)["message"]
    # a tenant's route: Authorization is no token there
    status, _, body = env.request(
        "GET", LIST, token=None, headers={"Authorization": f"Bearer {SEED_TOKEN}"}
    )
    assert status == 401 and "X-Auth-Token" in fault(body)["message"]


def test_a_repeated_authorization_header_is_refused(env: Env) -> None:
    raw = (
        "GET /metrics HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {OPERATOR_TOKEN}\r\nAuthorization: Bearer {SEED_TOKEN}\r\n\r\n"
    )
    status, _, body = exchange(env.server.address, raw.encode())
    assert status == 400 and "repeated Authorization header" in fault(body)["message"]


def test_a_tenant_sees_that_a_restart_runs_not_who_runs_it_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 probe 5: a tenant's group details showed the operator's pid, ``user@host`` and
    the server's paths. A tenant now reads "a restart runs since ..."; an operator's token
    still shows the holder."""
    state = tmp_path / "state"
    monkeypatch.setenv("HARESTART_STATE_DIR", str(state))
    e, _ = make_env(tmp_path, restarter=BackgroundRestarter(str(tmp_path / "inv.yml")))
    e.server.stop()
    e.server = ApiServer(e.api).start()
    try:
        with GroupLock(state, SEED_ACCOUNT, SEED_HA, command="harestart run /srv/inv.yml"):
            status, _, body = e.request("GET", DETAIL)
            operator = json.loads(e.request("GET", DETAIL, token=OPERATOR_TOKEN)[2])
    finally:
        e.server.stop()
    assert status == 200
    ha = json.loads(body)["ha_instance"]
    assert ha["state"] == "REBOOT" and ha["lock"]["holder"].startswith("a restart runs since ")
    text = body.decode()
    for secret in (f"pid {os.getpid()}", f"{getpass.getuser()}@", str(state), "/srv/inv.yml"):
        assert secret not in text, secret
    assert f"pid {os.getpid()}" in operator["ha_instance"]["lock"]["holder"]


def test_a_tenant_refused_by_the_lock_is_not_told_who_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 probe 5 (the 422): a tenant's restart refused by another run's lock was told the
    holder's pid, ``user@host`` and the lock file's path; an operator still is."""
    state = tmp_path / "state"
    monkeypatch.setenv("HARESTART_STATE_DIR", str(state))
    fake = BlockingRestart(state)
    fake.release.set()  # a run that takes the lock ends at once (it never gets it here)
    e, _ = make_env(tmp_path, restarter=BackgroundRestarter("/srv/inv.yml", restart=fake))
    try:
        with GroupLock(state, SEED_ACCOUNT, SEED_HA, command="harestart run /srv/inv.yml"):
            status, _, body = e.request("POST", f"{DETAIL}/action", '{"restart": {}}')
            op_status, _, op_body = e.request(
                "POST", f"{DETAIL}/action", '{"restart": {}}', token=OPERATOR_TOKEN
            )
    finally:
        e.server.stop()
    assert status == 422 and "another harestart run holds group" in fault(body)["message"]
    text = body.decode()
    for secret in (f"pid {os.getpid()}", f"{getpass.getuser()}@", str(state), "/srv/inv.yml"):
        assert secret not in text, secret
    assert op_status == 422 and f"pid {os.getpid()}" in fault(op_body)["message"]


def test_an_operator_token_reads_every_account_a_tenant_only_its_own(env: Env) -> None:
    other = LIST.replace("1234", "5678")
    assert env.request("GET", other)[0] == 403  # the seed's tenant token, another account
    status, _, body = env.request("GET", other, token=OPERATOR_TOKEN)
    assert status == 200 and [h["id"] for h in json.loads(body)["ha_instances"]] == ["other"]


def test_the_tokens_file_takes_operator_entries_and_refuses_look_alikes(tmp_path: Path) -> None:
    tokens = parse_tokens(
        '"tenant-token-0123456789": "1234"\n"operator-token-0123456789": {operator: true}\n',
        "t.yml",
    )
    tenant, operator = (
        tokens.caller("tenant-token-0123456789"),
        tokens.caller("operator-token-0123456789"),
    )
    assert tenant is not None and not tenant.operator and tenant.account == "1234"
    assert operator is not None and operator.operator
    for bad in ("{operator: false}", "{operator: yes, account: 1}", "{admin: true}"):
        with pytest.raises(UsageError, match=r"t.yml:1: entry 1: an operator's entry is"):
            parse_tokens(f'"operator-token-0123456789": {bad}\n', "t.yml")
