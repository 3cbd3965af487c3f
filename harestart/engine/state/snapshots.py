"""A file of JSON snapshots, one per line, the last complete line the current one: how a run's
journal is saved twelve times per group at the cost of one synchronous ``write`` each.

Replacing the file at every save (a new file, fsync, rename, fsync the directory) allocated an
inode per save, and with hundreds of groups saving at once ext4's inode allocator, scanning
past the inodes it had just freed, was most of harestart's CPU (``make bench-scale``). So a
writer's first save replaces the file (whatever an earlier run left there becomes history at
once), and each later save appends one line, synchronously (``O_DSYNC``: the write returns
once the line is on disk, as a write and an fdatasync would); the file is replaced again
instead when it would grow past ``COMPACT_AT``. The writer keeps the file open between saves:
a save is one ``write``.

Reading (``current``): a line is a snapshot once its newline is written. A crash in the middle
of an append leaves a last line without one: it is ignored, and the snapshot before it is the
current one (that save never returned, so nothing it announced was started). A file that does
not end with a newline and has none is one document: what harestart wrote before journal
version 4 (one line); one that starts with ``{`` and a newline is the indented document of its
first releases.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from harestart.engine.state.private import PrivateDir, write_all

# Appends stop there and the next save replaces the file: a run of 50 steps appends ~100
# snapshots of ~10 KiB, and a reader reads at most a few times this (journal.MAX_BYTES).
COMPACT_AT = 256 * 1024


@dataclass
class SnapshotFile:
    """The writer of one snapshot file in one process: replaces it first (``replace``), then
    appends (``append``) through the descriptor it keeps open until ``close``. Only one
    writer may exist per file: the journal's is the holder of the group's lock."""

    path: Path
    fd: int | None = None  # the file this writer put in place, open for appending
    written: int = 0  # its size
    # Closes ``fd`` when the writer is dropped without ``close`` (a journal of a unit test).
    _closer: weakref.finalize[[int], SnapshotFile] | None = field(default=None, repr=False)

    def append(self, snapshot: bytes) -> bool:
        """``snapshot`` (one line of JSON, no newline) appended, on disk when this returns
        (the file is open ``O_DSYNC``); False when the file must be replaced instead (not
        written yet by this writer, or full)."""
        line = snapshot + b"\n"
        if self.fd is None or self.written + len(line) > COMPACT_AT:
            return False
        try:
            write_all(self.fd, line)
        except BaseException:
            self.close()  # the next save replaces the file: no line after a torn one
            raise
        self.written += len(line)
        return True

    def replace(self, d: PrivateDir, snapshot: bytes) -> None:
        """The file replaced atomically by ``snapshot`` alone (in ``d``, its directory)."""
        self.close()
        line = snapshot + b"\n"
        fd = d.put_atomically(self.path.name, line, synchronous=True)
        self.fd, self.written = fd, len(line)
        self._closer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()  # os.close(fd), once
        self.fd = self._closer = None


def current(data: bytes) -> bytes:
    """The current snapshot of a file's ``data``: its last complete line (see above)."""
    if data.startswith(b"{\n"):  # one indented document (harestart's first releases)
        return data
    end = data.rfind(b"\n")
    if end < 0:  # one document on one line, no newline (version 3)
        return data
    return data[data.rfind(b"\n", 0, end) + 1 : end]
