"""Operators' pending-restart marks of a group kept in the state directory (#23), when the
group has no coordination service: ``<state>/marks/<account>+<group>.json`` (names from
``engine.state.names``), 0600 in a checked 0700 directory (``engine.state.private``), replaced
atomically. Read back at most ``MAX_BYTES`` and parsed into ``OperatorMark`` records
(``domain.pending.marks``): a file that is not exactly that is refused (StateDirError, exit 2)
naming the file and what is wrong, never half-read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harestart.domain.group import Group
from harestart.domain.pending.marks import (
    MarkRefused,
    OperatorMark,
    cleared,
    marks_document,
    parse_marks,
)
from harestart.engine.state.names import state_name
from harestart.engine.state.private import PrivateDir, created_subdir, state_subdir
from harestart.errors import StateDirError

SUBDIR = "marks"
MAX_BYTES = 256 * 1024  # 100 marks of ~1 KiB each, with room


class LocalMarks:
    """The marks of groups without a coordination service, in ``state_dir``."""

    backend = "local"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def _name(self, group: Group) -> str:
        return state_name(group.account, group.id, ".json")

    def pending_marks(self, group: Group) -> tuple[OperatorMark, ...]:
        with state_subdir(self.state_dir, SUBDIR, create=False) as d:
            return () if d is None else _read(d, self._name(group))

    def add_pending_mark(self, group: Group, mark: OperatorMark) -> None:
        with created_subdir(self.state_dir, SUBDIR) as d:
            name = self._name(group)
            kept = tuple(m for m in _read(d, name) if m.node != mark.node)
            _write(d, name, (*kept, mark))

    def clear_pending_marks(self, group: Group, nodes: frozenset[str] | None) -> int:
        with state_subdir(self.state_dir, SUBDIR, create=False) as d:
            if d is None:
                return 0
            name = self._name(group)
            marks = _read(d, name)
            left = cleared(marks, nodes)
            if left:
                _write(d, name, left)
            else:
                d.unlink(name)
            return len(marks) - len(left)

    def close(self) -> None:
        pass


def _read(d: PrivateDir, name: str) -> tuple[OperatorMark, ...]:
    path = d.path / name
    try:
        fd = d.open(name, os.O_RDONLY)
    except FileNotFoundError:
        return ()
    try:
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise d.refused(path, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise d.refused(path, f"is not a marks file (more than {MAX_BYTES} bytes)")
    try:
        return parse_marks(json.loads(data))
    except (ValueError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, MarkRefused) else "not JSON"
        raise StateDirError(d.root, path, f"is not a marks file: {why}") from None


def _write(d: PrivateDir, name: str, marks: tuple[OperatorMark, ...]) -> None:
    d.write_atomically(name, json.dumps(marks_document(marks)).encode())
