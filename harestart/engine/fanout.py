"""Waiting on several hosts at once: ``fan_out`` asks many groups side by side (at most
``limit`` in flight), ``side_by_side`` asks two things of one node together.

The adapters block (paramiko, pymysql), and a probe spends its time waiting on the network,
so threads (``concurrent.futures``) are enough: a frozen host costs its own timeouts to its
own thread, not to everything queued behind it. Results come back in the order the items were
given, whatever the order they finished in, so output and refusals stay deterministic. An
exception is one item's result, never the others' end: the caller decides what it means.
Each task runs in a copy of the caller's context, so log events keep their bound fields.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["MAX_PREFLIGHT_PARALLEL", "PREFLIGHT_PARALLEL", "fan_out", "side_by_side"]

# Groups probed at once by preflight, `status` and `plan --probe` (--preflight-parallel): each
# group's probe has a thread per node and one for MHA, so 32 groups of 3 nodes keep ~200 threads
# waiting on the network; 256 is the most the flag accepts (thousands of threads).
PREFLIGHT_PARALLEL = 32
MAX_PREFLIGHT_PARALLEL = 256

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
B = TypeVar("B")


def _call(fn: Callable[[T], R], item: T) -> R | Exception:
    try:
        return fn(item)
    except Exception as exc:  # the item's result: the caller reports it
        return exc


def fan_out(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    limit: int,
    abandon: Callable[[R], None] | None = None,
    name: str = "fan-out",
) -> list[R | Exception]:
    """``fn`` of every item, at most ``limit`` at once; each result (or the exception it
    raised) at its item's place. ``limit`` 1 or a single item: on the caller's thread.

    Interrupted (KeyboardInterrupt while waiting): items not started are cancelled, the
    running ones are not waited for, and ``abandon`` gets each result that will not be used
    (already there, or arriving later), e.g. to close what it opened."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if limit == 1 or len(items) <= 1:
        return [_call(fn, item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix=name)
    futures: list[Future[R | Exception]] = []
    try:
        futures = [pool.submit(contextvars.copy_context().run, _call, fn, i) for i in items]
        results = [f.result() for f in futures]
    except BaseException:
        # Interrupted: do not wait for hosts (the threads end with their own timeouts).
        pool.shutdown(wait=False, cancel_futures=True)
        if abandon is not None:
            for future in futures:
                future.add_done_callback(_abandoning(abandon))
        raise
    pool.shutdown()  # every task is done: only the idle threads' exit is waited for
    return results


def _abandoning(abandon: Callable[[R], None]) -> Callable[[Future[R | Exception]], None]:
    def done(future: Future[R | Exception]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # nothing opened (the interrupt itself, in its thread)
        result = future.result()
        if not isinstance(result, Exception):
            abandon(result)

    return done


def side_by_side(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``first()`` on a helper thread while ``second()`` runs on this one: together they take
    the longer of the two, not the sum. Either's exception is raised (``second``'s first)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="side")
    try:
        other = pool.submit(contextvars.copy_context().run, first)
        mine = second()
        theirs = other.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # do not wait for a host
        raise
    pool.shutdown()  # done: no thread left behind
    return theirs, mine
