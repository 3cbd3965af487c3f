"""Waiting on several hosts at once: ``fan_out`` asks many groups side by side (at most
``limit`` in flight), ``Together`` makes the host calls of one observation at the same time.

The adapters block (paramiko, pymysql), and a probe spends its time waiting on the network,
so threads (``concurrent.futures``) are enough: a frozen host costs its own timeouts to its
own thread, not to everything queued behind it. Results come back in the order the items were
given, whatever the order they finished in, so output and refusals stay deterministic. An
exception is one item's result, never the others' end: the caller decides what it means.
Each task runs in a copy of the caller's context, so log events keep their bound fields.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from harestart.engine.limits import MAX_PREFLIGHT_PARALLEL, PREFLIGHT_PARALLEL

__all__ = ["MAX_PREFLIGHT_PARALLEL", "PREFLIGHT_PARALLEL", "Together", "fan_out"]


T = TypeVar("T")
R = TypeVar("R")


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


# Host calls made side by side within a group's observation (``Together``) run on one pool for
# the whole process, whose threads are reused from one observation to the next: a new pool per
# observation started ~10 threads per group run, and with hundreds of groups running, thread
# starts and their handshakes were a fifth of harestart's CPU (``make bench-scale``). Its tasks
# are leaves (a host call never waits on the pool), so the bound cannot deadlock it: calls
# beyond it only wait for a free thread.
HOST_THREADS = 2048  # 256 groups of 3 nodes probed at once: 1,792 calls
_host_pool: ThreadPoolExecutor | None = None
_host_pool_lock = threading.Lock()


def _hosts() -> ThreadPoolExecutor:
    global _host_pool  # noqa: PLW0603 - one pool per process, made on first use
    with _host_pool_lock:
        if _host_pool is None:
            _host_pool = ThreadPoolExecutor(HOST_THREADS, thread_name_prefix="host")
        return _host_pool


class Together:
    """Host calls started at once (``start``), on the host pool's threads, and waited for at
    the end of the ``with`` block: together they take as long as the slowest. The caller's
    thread only waits (so Ctrl-C reaches it). Interrupted (KeyboardInterrupt while waiting):
    the calls not started are cancelled and the running ones are not waited for (they end with
    their own timeouts). ``serial``: each call runs at once on the caller's thread instead (the
    benchmark's one-after-the-other baseline)."""

    def __init__(self, *, serial: bool = False) -> None:
        self.serial = serial
        self._futures: list[Future[object]] = []

    def start(self, fn: Callable[[], R]) -> Future[R]:
        """``fn()`` started; its result (or exception) from the future once the block ended.
        Runs in a copy of the caller's context, so log events keep their bound fields."""
        if self.serial:
            done: Future[R] = Future()
            try:
                done.set_result(fn())
            except Exception as exc:  # the call's result: the caller reports it
                done.set_exception(exc)
            return done
        future = _hosts().submit(contextvars.copy_context().run, fn)
        self._futures.append(future)  # type: ignore[arg-type]  # only waited on
        return future

    def __enter__(self) -> Together:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        futures, self._futures = self._futures, []
        if kind is None:
            try:
                wait(futures)
            except BaseException:
                _cancel(futures)  # interrupted while waiting: do not wait for hosts
                raise
        else:
            _cancel(futures)


def _cancel(futures: list[Future[object]]) -> None:
    for future in futures:
        future.cancel()  # those not started; the running ones end with their own timeouts
