"""The run's log file: every group's records, written by whichever thread is writing, as many
at a time as came in meanwhile (group commit, without a thread of its own).

Each record used to be one ``write`` system call by the thread that logged it. The call
releases the interpreter lock, and with hundreds of groups running each release handed the
lock to another thread that soon wrote too: at 500 groups in parallel, writing the log cost
more CPU than building its records (``make bench-scale``). Now a thread that logs appends its
record to a list, and if no thread is writing, it writes the list, again and again until the
list is empty. Records logged while it writes are taken in its next round: one ``write`` for
all of them, and their threads go on at once. A quiet harestart still writes each record as it
is logged, by the thread that logged it.

A record is in the file before the thread that logged it returns, or, when another thread
was writing, once that thread's current write returns. A process killed in that instant
loses those records, as it would lose a stdio buffer; the journal, not the log, is what a
resume reads. A file that cannot be written (disk full) is reported once on stderr and the
run goes on without it.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from harestart.engine.state.private import write_all

# How long ``close`` waits for the thread writing now (a write of a few MB takes milliseconds).
CLOSE_TIMEOUT_S = 10.0


class LogFile:
    """A log file, appended to by the threads that log (one of them at a time)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self._fd: int | None = fd
        self._lines: list[str] = []
        self._lock = threading.Condition()  # close() waits on it for the writing thread
        self._writing = False  # a thread is writing the list: it takes what is appended
        self._failed = False
        self._closed = False

    def write(self, line: str) -> None:
        """Append ``line`` (one record, ending with a newline) to the file."""
        with self._lock:
            if self._closed:
                return
            self._lines.append(line)
            if self._writing:
                return  # taken by the writing thread in its next round
            self._writing = True
        try:
            while True:
                with self._lock:
                    lines, self._lines = self._lines, []
                    if not lines:
                        self._writing = False
                        self._lock.notify_all()
                        return
                self._write("".join(lines).encode("utf-8", "backslashreplace"))
        except BaseException:  # e.g. Ctrl-C during the write: the next record writes again
            with self._lock:
                self._writing = False
                self._lock.notify_all()
            raise

    def close(self) -> None:
        """Write what is left and close the file (the command's end, or logging set up again);
        records logged later are dropped."""
        with self._lock:
            self._lock.wait_for(lambda: not self._writing, timeout=CLOSE_TIMEOUT_S)
            self._writing = self._closed = True  # for good: nobody writes after this
            lines, self._lines = self._lines, []
        self._write("".join(lines).encode("utf-8", "backslashreplace"))
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _write(self, data: bytes) -> None:
        if self._failed or self._fd is None:
            return
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self._failed = True  # said once; the run goes on without its log
            print(
                f"harestart: cannot write the log file {self.path} ({exc.strerror}); "
                "records from now on are lost",
                file=sys.stderr,
            )
