"""The run journal: every step's progress, written durably before and after it acts.

One file per group (``<state>/journals/<account>+<group>.json``, ``engine.state.names``),
owner-only (0600) in the checked ``journals`` directory (``engine.state.private``): a file of
snapshots (``engine.state.snapshots``), replaced atomically by a run's first save, then one JSON
line appended and fdatasynced per save, so after a failure, Ctrl-C, ``kill -9`` or a power
loss its current snapshot is the last one a save returned from (or the one being written).
``harestart resume`` continues from it; ``harestart status`` shows an unfinished one. No secret
is ever written: the journal holds names, positions, timings and sentences.

A journal is trusted only after it was read back (``find_journal``): at most ``MAX_BYTES``, never
through a symbolic link, parsed with a bound on nesting into a typed model (``_JournalFile``:
``"finished": "no"`` is malformed, not finished), and written for this group: its account and
group must be the group's, and an unfinished one must come from the same inventory file
(``inventory_path``, from version 3 on). Otherwise JournalError: the group is ERROR with the
reason, and nothing is resumed.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harestart.engine.sequencer.memory import RunMemory
from harestart.engine.state.names import legacy_name, state_name
from harestart.engine.state.private import PrivateDir, created_subdir, state_subdir
from harestart.engine.state.snapshots import SnapshotFile, current
from harestart.errors import JournalError, JournalMismatch

# 4: a file of snapshots, one per line; 3: records inventory_path; 2: typed run memory instead
# of string notes (all read).
VERSION = 4
MAX_BYTES = 1 << 20  # a journal of 50 steps is ~10 KiB
SUFFIX = ".json"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def journal_path(state_dir: Path, account: str, group: str) -> Path:
    return state_dir / "journals" / state_name(account, group, SUFFIX)


def inventory_identity(inventory: str) -> str:
    """The inventory file as a journal records it: its absolute path, links resolved."""
    return os.path.realpath(inventory)


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
    run_id: str = field(default_factory=new_run_id)
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
    # The inventory file's identity (``inventory_identity``); "" in a journal before version 3
    # (its inventory is not checked).
    inventory_path: str = ""
    # The file an earlier harestart named this journal (``names.legacy_name``) when it was read
    # from there: removed once this journal is saved under its own name.
    legacy: str | None = field(default=None, compare=False)
    # This process's writer of the file: its first save replaces the file, later ones append.
    _file: SnapshotFile | None = field(default=None, compare=False, repr=False)

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
        """The fields but ``path``, ``legacy`` and ``_file``, then ``version`` (what ``asdict``
        gives, without the deep copy it makes of every value: the dict is serialised at once,
        twenty times a run)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SAVED}
        d["steps"] = [{f.name: getattr(s, f.name) for f in _STEP_FIELDS} for s in self.steps]
        d["version"] = VERSION
        return d

    def save(self) -> None:
        """Make the journal's current snapshot this one, durably (0600 in a checked 0700
        directory): the first save of this process replaces the file, later ones append."""
        # One line: written twenty times a run, and the C encoder is used only without indent
        # (5 ms of CPU per group less; `tail -n1 FILE | jq .` shows it indented).
        data = json.dumps(self.to_dict()).encode()
        if self._file is None or self._file.path != self.path:
            self.close()
            self._file = SnapshotFile(self.path)
        if self._file.append(data):
            return
        with created_subdir(self.path.parent.parent, self.path.parent.name) as d:
            self._file.replace(d, data)
            if self.legacy is not None:
                d.unlink(self.legacy)
                self.legacy = None

    def close(self) -> None:
        """Let go of the file (a later ``save`` replaces it again)."""
        if self._file is not None:
            self._file.close()

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        """The journal at ``path`` (``<state>/journals/NAME``), or None when there is none;
        JournalError when it cannot be read or is malformed (whatever group it names)."""
        with state_subdir(path.parent.parent, path.parent.name, create=False) as d:
            return None if d is None else _read(d, path.name, path)

    def remove(self) -> None:
        self.close()
        with state_subdir(self.path.parent.parent, self.path.parent.name, create=False) as d:
            if d is not None:
                d.unlink(self.path.name)
                if self.legacy is not None:
                    d.unlink(self.legacy)

    def describe(self) -> str:
        nxt = self.first_unfinished()
        where = f"stopped at {nxt.key} ({nxt.status}: {nxt.detail})" if nxt else "all steps done"
        return (
            f"run {self.run_id} started {self.started_at}, {self.outcome or 'unfinished'}, "
            f"{where}; MHA was {'running' if self.mha_was_running else 'not running'} before"
        )


_NOT_SAVED = {"path", "legacy", "_file"}


# --- reading a journal back ---------------------------------------------------------------


def find_journal(
    state_dir: Path, account: str, group: str, inventory: str | None
) -> Journal | None:
    """The group's journal, or None. Raises JournalError when it cannot be read or is
    malformed, JournalMismatch when it was written for another group, or, unfinished, for
    another inventory file (``inventory`` None: not checked); StateDirError when the directory
    or file cannot be trusted.

    A journal an earlier harestart wrote under ``legacy_name`` is found when none has the new
    name: it records its account and group, so it is taken only by the group it names (group
    ``x_y`` never takes the one of ``x:y``), and saved under the new name from then on."""
    path = journal_path(state_dir, account, group)
    with state_subdir(state_dir, path.parent.name, create=False) as d:
        if d is None:
            return None
        journal = _read(d, path.name, path)
        if journal is None:
            old = legacy_name(account, group, SUFFIX)
            journal = _read(d, old, path.parent / old)
            if journal is None or (journal.account, journal.group) != (account, group):
                return None  # none, or another group's (names were not injective then)
            journal.path, journal.legacy = path, old
    _check_belongs(journal, account, group, inventory)
    return journal


def _check_belongs(journal: Journal, account: str, group: str, inventory: str | None) -> None:
    where = journal.legacy or journal.path
    if (journal.account, journal.group) != (account, group):
        raise JournalMismatch(
            f"{where} records a run of group {journal.group!r} of account {journal.account!r}, "
            f"not of group {group!r} of account {account!r}: refused (nothing is resumed from "
            "it; move it away after checking)"
        )
    if inventory is None or journal.finished or not journal.inventory_path:
        return
    mine = inventory_identity(inventory)
    if journal.inventory_path == mine:
        return
    raise JournalMismatch(
        f"{where} records an unfinished run of group {group} from the inventory "
        f"{journal.inventory_path}, not {mine}: refused (continue it with `harestart resume "
        f"{journal.inventory_path} --group {group}`, or start over with `harestart run ... "
        "--discard-unfinished`)"
    )


def _read(d: PrivateDir, name: str, path: Path) -> Journal | None:
    try:
        fd = d.open(name, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > MAX_BYTES:
            raise JournalError(
                f"{path}: malformed journal ({size} bytes, more than {MAX_BYTES} a journal is)"
            )
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return _parse(current(data), path)


def _parse(data: bytes, path: Path) -> Journal:
    try:
        doc = _JournalFile.model_validate_json(data)
        memory = doc.memory.model_dump(exclude_unset=True) if doc.memory is not None else {}
        if doc.version == 1:
            memory = RunMemory.from_notes(doc.notes or {}).to_dict()
        RunMemory.from_dict(memory)  # what resume reads back (read_only tokens...)
    except ValidationError as exc:
        raise JournalError(f"{path}: malformed journal ({_reasons(exc)})") from None
    except (ValueError, TypeError) as exc:
        raise JournalError(f"{path}: malformed journal (memory: {exc})") from None
    return Journal(
        path=path,
        group=doc.group,
        account=doc.account,
        inventory=doc.inventory,
        inventory_path=doc.inventory_path,
        run_id=doc.run_id,
        started_at=doc.started_at,
        state=doc.state,
        finished=doc.finished,
        outcome=doc.outcome,
        mha_was_running=doc.mha_was_running,
        mha_before=doc.mha_before,
        topology=doc.topology.model_dump(exclude_unset=True),
        memory=memory,
        steps=[JournalStep(**s.model_dump()) for s in doc.steps],
        attempts=doc.attempts,
    )


def _reasons(exc: ValidationError) -> str:
    """Up to three of pydantic's findings, each with its field path (never the input)."""
    errors = exc.errors(include_input=False, include_url=False)
    found = [f"{'.'.join(str(x) for x in e['loc']) or 'document'}: {e['msg']}" for e in errors[:3]]
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(found) + more


class _Strict(BaseModel):
    # strict: no coercion ("no" is not a bool, "1" not an int); forbid: no unknown field.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Step(_Strict):
    key: str
    status: Literal["pending", "running", "done", "skipped", "failed", "interrupted"] = "pending"
    started_at: str | None = None
    duration_s: float | None = None
    detail: str = ""
    restart_issued_at: float | None = None


class _Topology(_Strict):
    source: str | None = None
    source_server_id: int | None = None
    replicas: dict[str, int | None] = Field(default_factory=dict)


class _NodeMemory(_Strict):
    read_only: str | None = None
    catch_up: str | None = None
    dirty_pct: str | None = None
    offline: Literal["ON"] | None = None


class _SwitchMemory(_Strict):
    source: str
    candidate: str
    phase: str
    source_was: str


class _Memory(_Strict):
    nodes: dict[str, _NodeMemory] = Field(default_factory=dict)
    detached: list[str] = Field(default_factory=list)
    source: str | None = None
    switch: _SwitchMemory | None = None


class _JournalFile(_Strict):
    """A journal snapshot as written by ``Journal.to_dict`` (versions 1 to 4); parsed by pydantic
    from bytes, whose JSON parser bounds nesting (a journal nested 100,000 deep is malformed,
    not a RecursionError)."""

    version: Literal[1, 2, 3, 4]
    group: str
    account: str
    inventory: str
    inventory_path: str = ""
    run_id: str = ""
    started_at: str = ""
    state: Literal["ACTIVE", "REBOOT", "ERROR"] = "ACTIVE"
    finished: bool = False
    outcome: str = ""
    mha_was_running: bool | None = None
    mha_before: str | None = None
    topology: _Topology = Field(default_factory=_Topology)
    memory: _Memory | None = None
    notes: dict[str, str] | None = None  # version 1
    steps: list[_Step]
    attempts: int = Field(default=1, ge=1)
