"""Lines written from many threads at once (the run log, the progress lines): by whichever
thread is writing, as many at a time as came in meanwhile (group commit, without a thread of
its own).

Each line used to be one ``write`` system call by the thread that produced it. The call
releases the interpreter lock, and with hundreds of groups running each release handed the
lock to another thread that soon wrote too: at 500 groups in parallel, writing the log cost
more CPU than building its records (``make bench-scale``). Now a thread appends its line to a
list, and if no thread is writing, it writes the list, again and again until the list is
empty. Lines that come in while it writes are taken in its next round: one ``write`` for all
of them, and their threads go on at once. A quiet harestart still writes each line as it
comes, from the thread it comes from.

A line is written before the thread that produced it returns, or, when another thread was
writing, once that thread's current write returns. A process killed in that instant loses
those lines, as it would lose a stdio buffer; the journal, not the log, is what a resume
reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# How long ``close`` waits for the thread writing now (a write of a few MB takes milliseconds).
CLOSE_TIMEOUT_S = 10.0


class GroupCommit:
    """Lines handed to ``sink`` (one string, any number of lines) by one thread at a time."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._lines: list[str] = []
        self._lock = threading.Condition()  # close() waits on it for the writing thread
        self._writing = False  # a thread is writing the list: it takes what is appended
        self._closed = False

    def write(self, line: str) -> None:
        """Write ``line`` (ending with a newline), now or in the writing thread's next round.
        The sink's exception reaches the thread that wrote."""
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
                self._sink("".join(lines))
        except BaseException:  # a failed write, Ctrl-C: the next line writes again
            with self._lock:
                self._writing = False
                self._lock.notify_all()
            raise

    def close(self) -> None:
        """Write what is left, once the thread writing now is done; lines written later are
        dropped."""
        with self._lock:
            self._lock.wait_for(lambda: not self._writing, timeout=CLOSE_TIMEOUT_S)
            self._writing = self._closed = True  # for good: nobody writes after this
            lines, self._lines = self._lines, []
        if lines:
            self._sink("".join(lines))
