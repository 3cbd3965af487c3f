"""Issue #21's slowloris and connection-cap probes against a real ``harestart serve`` process
(its inventory's hosts are unreachable by design: the API answers from its lock and journal
view, and the background observer only fails quietly). Each failed on the main branch before
#21, as its docstring says."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harestart.engine.sequencer.waiting import poll_until

from .test_api import LIST, REPO, SEED_ACCOUNT, SEED_TOKEN, inventory_text
from .test_http_hostile import WAIT, Trickler, exchange, parse


@contextmanager
def serve(tmp_path: Path, *args: str, open_files: int | None = None) -> Iterator[tuple[int, Path]]:
    """``harestart serve`` on a free port (its port and its log file); SIGTERM at the end.
    ``open_files``: its RLIMIT_NOFILE, soft and hard (as ``ulimit -n`` sets it)."""
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory_text(pw))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({SEED_TOKEN: SEED_ACCOUNT}))
    tokens.chmod(0o600)
    log = tmp_path / "serve.log"

    # ulimit -n as the probe ran it (soft and hard), in the shell that then execs serve
    ulimit = (
        [] if open_files is None else ["bash", "-c", f'ulimit -n {open_files} && exec "$@"', "-"]
    )
    env = {"PATH": "/usr/bin:/bin", "HARESTART_STATE_DIR": str(tmp_path / "state")}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*ulimit, sys.executable, "-m", "harestart", "serve", str(inv), "--port", "0",
             "--tokens", str(tokens), *args],
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=env,
        )  # fmt: skip
    try:

        def listening() -> int | None:
            assert proc.poll() is None, log.read_text()
            for event in events(log):
                if event["event"] == "api.listening":
                    return int(event["port"])
            return None

        yield poll_until(listening, what="serve listening", timeout=WAIT), log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def get_list(port: int) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_serve_answers_while_sixteen_slowloris_connections_trickle(tmp_path: Path) -> None:
    """#21 probe 1 on a real serve: 16 connections sending a header byte at a time made every
    request answer 503 (all 16 workers busy) for as long as they trickled."""
    with serve(tmp_path, "--request-timeout", "2") as (port, log):
        payload = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode() + b"a" * 10_000
        slow = Trickler(("127.0.0.1", port), 16, payload)
        try:
            slow.wait_started()
            assert get_list(port) == 200  # while all 16 trickle
            answers = slow.join()
        finally:
            slow.stop.set()
    assert len(answers) == 16
    assert {parse(a)[0] for a in answers} == {400}  # each cut at the request deadline
    cut = [e for e in events(log) if e["event"] == "api.request" and e["status"] == 400]
    assert len(cut) == 16 and all("did not arrive within 2 s" in e["error"] for e in cut)


def test_serve_under_ulimit_256_caps_376_idle_connections_and_keeps_answering(
    tmp_path: Path,
) -> None:
    """#21 probe 2 on a real serve: under ``ulimit -n 256``, 376 idle connections took every
    descriptor: new requests timed out, the server spun on accept and observations failed with
    "Too many open files". Now the cap is sized below the limit (256 - 64 kept for restarts),
    a new connection at it is answered at once (503, or in the place of a silent one), the
    descriptor table never fills, and once the idle connections go a request is answered 200
    again."""
    with serve(tmp_path, open_files=256) as (port, log):
        (capped,) = [e for e in events(log) if e["event"] == "api.connections.capped"]
        assert capped["cap"] == 192 and capped["open_files_limit"] == 256
        held = []
        try:
            for _ in range(376):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            request = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n\r\n"
            status, _, _ = exchange(("127.0.0.1", port), request.encode())
            # at once, not a timeout: 503 over the cap, or 200 in the place of a connection
            # silent for over a second
            assert status in (200, 503), status
        finally:
            for s in held:
                s.close()

        def answered() -> bool | None:
            try:
                return get_list(port) == 200 or None
            except (ConnectionError, http.client.HTTPException):
                return None

        poll_until(answered, what="a 200 once the idle connections closed", timeout=WAIT)
    text = log.read_text()
    assert "Too many open files" not in text and "Traceback" not in text
