from __future__ import annotations

from collections.abc import Iterator

import pytest

from harestart.engine.sequencer.waiting import ManualClock, SystemClock, poll_until
from harestart.errors import MysqlError, WaitTimeout


def test_returns_first_non_none_value_without_sleeping() -> None:
    clock = ManualClock()
    assert poll_until(lambda: 0, what="x", timeout=5, clock=clock) == 0
    assert clock.sleeps == []


def test_falsy_values_other_than_none_count_as_done() -> None:
    clock = ManualClock()
    assert poll_until(lambda: False, what="x", timeout=5, clock=clock) is False
    assert poll_until(lambda: "", what="x", timeout=5, clock=clock) == ""


def test_polls_with_backoff_capped_at_max_interval() -> None:
    clock = ManualClock()
    answers = iter([None] * 6 + ["ready"])
    got = poll_until(
        lambda: next(answers),
        what="x",
        timeout=60,
        interval=1.0,
        backoff=2.0,
        max_interval=4.0,
        clock=clock,
    )
    assert got == "ready"
    assert clock.sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_times_out_with_last_description() -> None:
    clock = ManualClock()
    seen = iter(range(100))
    with pytest.raises(WaitTimeout) as info:
        poll_until(
            lambda: None,
            what="db2 replication running",
            timeout=3,
            interval=1,
            backoff=1,
            clock=clock,
            describe=lambda: f"IO Connecting, attempt {next(seen)}",
        )
    assert info.value.what == "db2 replication running"
    assert info.value.timeout == 3
    assert info.value.last == "IO Connecting, attempt 3"
    assert "not reached within 3 s" in str(info.value)
    assert clock.now() == 3


def test_last_attempt_happens_at_the_deadline() -> None:
    clock = ManualClock()
    calls: list[float] = []

    def check() -> str | None:
        calls.append(clock.now())
        return "ok" if clock.now() >= 2.5 else None

    # Pauses of 2 then 2 would overshoot; the second one is cut to land on the deadline,
    # and the check runs there once more instead of giving up early.
    assert poll_until(check, what="x", timeout=2.5, interval=2, backoff=1, clock=clock) == "ok"
    assert calls == [0, 2, 2.5]
    assert clock.sleeps == [2, 0.5]


def test_zero_timeout_checks_exactly_once() -> None:
    clock = ManualClock()
    calls = []
    with pytest.raises(WaitTimeout):
        poll_until(lambda: calls.append(1), what="x", timeout=0, clock=clock)
    assert calls == [1]
    assert clock.sleeps == []


def test_slow_check_past_deadline_does_not_sleep_again() -> None:
    clock = ManualClock()

    def slow() -> None:
        clock.advance(10)

    with pytest.raises(WaitTimeout):
        poll_until(slow, what="x", timeout=5, clock=clock)
    assert clock.sleeps == []


def test_harestart_errors_mean_not_yet_and_their_text_is_kept() -> None:
    clock = ManualClock()
    attempts = iter(
        [MysqlError("db1", "connect", "(2003) Can't connect"), None, MysqlError("db1", "q", "x")]
        + [MysqlError("db1", "connect", "(2013) Lost connection")] * 100
    )

    def check() -> None:
        item = next(attempts)
        if item is not None:
            raise item

    with pytest.raises(WaitTimeout) as info:
        poll_until(check, what="db1 answers", timeout=2, interval=0.5, backoff=1, clock=clock)
    assert info.value.last == "db1: connect: (2013) Lost connection"


def test_errors_then_success() -> None:
    clock = ManualClock()
    attempts: Iterator[Exception | int] = iter([MysqlError("db1", "connect", "refused"), 42])

    def check() -> int:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    assert poll_until(check, what="x", timeout=5, clock=clock) == 42


def test_retry_errors_false_propagates() -> None:
    clock = ManualClock()

    def check() -> None:
        raise MysqlError("db1", "connect", "refused")

    with pytest.raises(MysqlError):
        poll_until(check, what="x", timeout=5, clock=clock, retry_errors=False)
    assert clock.sleeps == []


def test_other_exceptions_propagate() -> None:
    def check() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        poll_until(check, what="x", timeout=5, clock=ManualClock())


def test_on_wait_sees_each_pause() -> None:
    clock = ManualClock()
    waits: list[float] = []
    answers = iter([None, None, 1])
    poll_until(
        lambda: next(answers),
        what="x",
        timeout=5,
        interval=0.1,
        backoff=2,
        clock=clock,
        on_wait=waits.append,
    )
    assert waits == pytest.approx([0.1, 0.2])
    assert waits == clock.sleeps


def test_describe_failure_does_not_crash_the_wait() -> None:
    def describe() -> str:
        raise MysqlError("db1", "describe", "gone")

    with pytest.raises(WaitTimeout) as info:
        poll_until(
            lambda: None,
            what="x",
            timeout=0.1,
            clock=ManualClock(),
            describe=describe,
        )
    assert "describe failed" in info.value.last


def test_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        poll_until(lambda: None, what="x", timeout=1, interval=0, clock=ManualClock())


def test_system_clock_is_monotonic_and_zero_sleep_returns() -> None:
    clock = SystemClock()
    before = clock.now()
    clock.sleep(0)
    assert clock.now() >= before
