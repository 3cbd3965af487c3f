"""Run the real ``harestart`` entry point as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lab import REPO_ROOT


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
