"""One way to wait: ``poll_until`` with an injected clock.

Workflow code never sleeps by itself; it hands a ``check`` to ``poll_until``, which asks it
again with a growing pause until it answers or the deadline passes. ``SystemClock`` is the run's
only sleeper (the fleet loop and the coordination adapter poll their own conditions with
deadlines too); tests pass a ``ManualClock`` and never really wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from harestart.errors import HarestartError, WaitTimeout

T = TypeVar("T")


class StopWaiting(HarestartError):
    """Raised by a wait's ``check``: what it waits for can no longer come (a replication
    error, MHA failing over). ``poll_until`` stops at once and lets it propagate; its text is
    the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Clock(Protocol):
    """Monotonic time and a way to pass it."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and the run's pause between polls."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock for tests: ``sleep`` advances ``now`` instantly and records each pause."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        """Let time pass without a sleep (e.g. a slow check)."""
        self._now += seconds


SYSTEM_CLOCK: Clock = SystemClock()


def poll_until(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    max_interval: float = 1.0,
    backoff: float = 1.5,
    clock: Clock = SYSTEM_CLOCK,
    describe: Callable[[], str] | None = None,
    on_wait: Callable[[float], None] | None = None,
    retry_errors: bool = True,
) -> T:
    """Call ``check`` until it returns something other than ``None``, and return that.

    - Between attempts pause ``interval`` seconds, growing by ``backoff`` up to
      ``max_interval``, never past the deadline.
    - The last attempt happens at or after the deadline: a wait never gives up without
      having checked once more after its final pause.
    - A ``HarestartError`` raised by ``check`` means "not yet" (its text becomes the last
      observation) unless ``retry_errors`` is False; any other exception propagates.
    - ``StopWaiting`` raised by ``check`` ends the wait at once: it propagates, unretried.
    - On timeout raise ``WaitTimeout(what, timeout, last)``, where ``last`` is ``describe()``
      of the last attempt (or the last error text, or "not yet").
    - ``on_wait(seconds)`` is called before each pause, e.g. to log progress.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    deadline = clock.now() + timeout
    pause = interval
    last = "not yet"
    while True:
        try:
            result = check()
        except StopWaiting:
            raise
        except HarestartError as exc:
            if not retry_errors:
                raise
            last = str(exc)
        else:
            if result is not None:
                return result
            last = _describe(describe, last)
        now = clock.now()
        if now >= deadline:
            raise WaitTimeout(what, timeout, last)
        step = min(pause, deadline - now)
        if on_wait is not None:
            on_wait(step)
        clock.sleep(step)
        pause = min(pause * backoff, max(max_interval, interval))


def _describe(describe: Callable[[], str] | None, fallback: str) -> str:
    if describe is None:
        return "not yet"
    try:
        return describe()
    except HarestartError as exc:  # describing must not turn a wait into a crash
        return f"{fallback} (describe failed: {exc})"
