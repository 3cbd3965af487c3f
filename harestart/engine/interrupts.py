"""SIGINT/SIGTERM during a run: stop at the next safe point, not in the middle of an action.

The first signal sets a flag that the executor checks between steps and between polls of a
wait, so a restart command that was sent is allowed to finish and the journal says exactly
where the run stopped. A second signal abandons at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from harestart.errors import Interrupted


class InterruptFlag:
    def __init__(self) -> None:
        self.requested: str | None = None

    def request(self, name: str) -> None:
        self.requested = name

    def check(self) -> None:
        """Raise Interrupted if a stop was requested (call at safe points only)."""
        if self.requested is not None:
            raise Interrupted(self.requested)


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
