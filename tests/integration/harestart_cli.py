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
