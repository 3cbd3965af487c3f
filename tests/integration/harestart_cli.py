"""Run the real ``harestart`` entry point as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harestart.engine.state.snapshots import current

from .lab import REPO_ROOT, wait_for


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def harestart(
    *args: str, state_dir: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> Outcome:
    full_env = {**os.environ, "HARESTART_STATE_DIR": str(state_dir), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "harestart", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
        env=full_env,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def journal(state_dir: Path) -> dict[str, Any]:
    """The one journal in ``state_dir``, as its current snapshot (the file's last line)."""
    (path,) = (state_dir / "journals").glob("*.json")
    doc: dict[str, Any] = json.loads(current(path.read_bytes()))
    return doc


def log_events(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def start_harestart(
    *args: str, state_dir: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start the CLI in the background (for interrupts, kills and concurrent runs)."""
    full_env = {**os.environ, "HARESTART_STATE_DIR": str(state_dir), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "harestart", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=full_env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> Outcome:
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


def wait_for_event(
    log_path: Path,
    predicate: Any,
    *,
    timeout: float = 120,
    proc: subprocess.Popen[str] | None = None,
) -> dict[str, Any]:
    """Poll a run's JSON log until an event matches ``predicate`` (fails if the run exits)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists():
            for e in log_events_tolerant(log_path):
                if predicate(e):
                    return e
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"harestart exited {proc.returncode} first:\n{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"no matching event in {log_path} within {timeout} s")


def log_events_tolerant(path: Path) -> list[dict[str, Any]]:
    """Like log_events, but skips a last line still being written."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass
class Served:
    """A ``harestart serve`` started by ``start_serve``: its process, port and JSON log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def start_serve(
    inventory: Path, *, state_dir: Path, tokens: Path, args: tuple[str, ...] = ()
) -> Served:
    """``harestart serve INVENTORY`` on 127.0.0.1 and a free port, its log in ``state_dir``;
    returns once it logged ``api.listening`` (fails if it exits first)."""
    log = state_dir / "serve.jsonl"
    env = {**os.environ, "HARESTART_STATE_DIR": str(state_dir)}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harestart", "serve", str(inventory),
             "--host", "127.0.0.1", "--port", "0", "--tokens", str(tokens), *args],
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO_ROOT, env=env,
        )  # fmt: skip

    def listening() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"harestart serve exited {proc.returncode}:\n{log.read_text()}")
        for e in log_events_tolerant(log):
            if e["event"] == "api.listening":
                return int(e["port"])
        return None

    try:
        port = wait_for("harestart serve listening", listening, timeout=60)
    except BaseException:
        stop_serve(proc)
        raise
    return Served(proc, port, log)


def stop_serve(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it does not exit within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
