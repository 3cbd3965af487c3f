"""Stopping a run at a safe point: SIGINT/SIGTERM, or a lost coordination lease.

The first signal sets a flag that the executor checks between steps and between polls of a
wait, so a restart command that was sent is allowed to finish and the journal says exactly
where the run stopped. A second signal abandons at once (KeyboardInterrupt).

A lost lease (the group's lock, see ``engine.coordination``) is a different stop: it is a
failure (exit 1, "coordination lease lost: ..."), not an interrupt (130), and it is only
honoured *between* steps: the step in flight (a node's restart and the gates proving it) is
finished first, so a lost lease never leaves a node half-restarted.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from harestart.errors import Interrupted, LeaseLost


class InterruptFlag:
    """Why a run should stop: a signal (``requested``), a lost lease (``lease_lost``).

    ``scoped()`` gives one run its own flag: it sees its parent's signals, while a lease lost
    by this run's lock stops this run only (with ``--all`` each group has its own lock).
    """

    def __init__(self, parent: InterruptFlag | None = None) -> None:
        self._requested: str | None = None
        self._parent = parent
        self.lease_lost: str | None = None

    @property
    def requested(self) -> str | None:
        """The signal that asked the run to stop, if any (this flag's or its parent's)."""
        if self._requested is not None:
            return self._requested
        return self._parent.requested if self._parent is not None else None

    def request(self, name: str) -> None:
        self._requested = name

    def lose_lease(self, reason: str) -> None:
        """Called by the lock's heartbeat: the run no longer holds the group."""
        if self.lease_lost is None:
            self.lease_lost = reason

    def scoped(self) -> InterruptFlag:
        return InterruptFlag(parent=self)

    def check(self) -> None:
        """Raise Interrupted if a signal asked for a stop (call at safe points only)."""
        requested = self.requested
        if requested is not None:
            raise Interrupted(requested)

    def check_between_steps(self) -> None:
        """The safe point between two steps: a lost lease (LeaseLost) or a signal."""
        if self.lease_lost is not None:
            raise LeaseLost(self.lease_lost)
        self.check()


@contextmanager
def graceful_signals(flag: InterruptFlag, notify: Callable[[str], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``flag`` while the block runs; restore the handlers after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flag.requested is not None:
            raise KeyboardInterrupt(name)
        flag.request(name)
        notify(
            f"{name} received: stopping at the next safe point (the current action finishes); "
            "send it again to abandon at once"
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
