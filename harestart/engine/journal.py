"""The run journal: every step's progress, written durably before and after it acts.

One JSON file per group (``<state>/journals/<account>-<group>.json``), replaced atomically
(write a temporary file, fsync, rename, fsync the directory) and owner-only (0600), so after a
failure, Ctrl-C or ``kill -9`` the file is either the previous or the next complete snapshot.
``harestart resume`` continues from it; ``harestart status`` shows an unfinished one.
No secret is ever written: the journal holds names, positions, timings and sentences.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harestart.engine.memory import RunMemory
from harestart.engine.private import private_dir, safe_name
from harestart.errors import JournalError

VERSION = 2  # 2: typed run memory instead of string notes (1 is still read)


def journal_path(state_dir: Path, account: str, group: str) -> Path:
    return state_dir / "journals" / f"{safe_name(account)}-{safe_name(group)}.json"


@dataclass
class JournalStep:
    key: str
    status: str = "pending"
    started_at: str | None = None
    duration_s: float | None = None
    detail: str = ""
    restart_issued_at: float | None = None  # wall clock, when the restart command was sent


_STEP_FIELDS = fields(JournalStep)


@dataclass
class Journal:
    """A run's durable record. Mutated by the executor, saved with ``save()``."""

    path: Path
    group: str
    account: str
    inventory: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: str = ""
    state: str = "ACTIVE"
    finished: bool = False
    outcome: str = ""  # done | failed | interrupted
    mha_was_running: bool | None = None
    mha_before: str | None = None
    topology: dict[str, Any] = field(default_factory=dict)  # source, server ids, replicas
    memory: dict[str, Any] = field(default_factory=dict)  # RunMemory.to_dict()
    steps: list[JournalStep] = field(default_factory=list)
    attempts: int = 1

    def step(self, key: str) -> JournalStep:
        for s in self.steps:
            if s.key == key:
                return s
        s = JournalStep(key)
        self.steps.append(s)
        return s

    def first_unfinished(self) -> JournalStep | None:
        return next((s for s in self.steps if s.status not in ("done", "skipped")), None)

    def to_dict(self) -> dict[str, Any]:
        """The fields but ``path``, then ``version`` (what ``asdict`` gives, without the deep
        copy it makes of every value: the dict is serialised at once, twenty times a run)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        d["steps"] = [{f.name: getattr(s, f.name) for f in _STEP_FIELDS} for s in self.steps]
        d["version"] = VERSION
        return d

    def save(self) -> None:
        """Atomically replace the journal file (0600 in a 0700 directory) and fsync it."""
        private_dir(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # One line: written twenty times a run, and the C encoder is used only without indent
        # (5 ms of CPU per group less; `jq . FILE` shows it indented).
        data = json.dumps(self.to_dict()).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        """The journal at ``path``, or None when there is none."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise JournalError(f"cannot read the journal {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise JournalError(f"{path}: malformed journal (not a JSON object)")
        if raw.get("version") not in (1, VERSION):
            raise JournalError(f"{path}: unknown journal version {raw.get('version')!r}")
        try:
            if raw.get("version") == 1:
                raw["memory"] = RunMemory.from_notes(raw.pop("notes", {})).to_dict()
            steps = [JournalStep(**s) for s in raw.pop("steps")]
            raw.pop("version")
            return cls(path=path, steps=steps, **raw)
        except (TypeError, KeyError, ValueError) as exc:
            raise JournalError(f"{path}: malformed journal ({exc})") from None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def describe(self) -> str:
        nxt = self.first_unfinished()
        where = f"stopped at {nxt.key} ({nxt.status}: {nxt.detail})" if nxt else "all steps done"
        return (
            f"run {self.run_id} started {self.started_at}, {self.outcome or 'unfinished'}, "
            f"{where}; MHA was {'running' if self.mha_was_running else 'not running'} before"
        )
