"""The in-place restart's write-gap attribution (no Docker): moments read from a MySQL error
log and a run log, and the gap cut into phases that add up to it. Never asserts a timing of
a real run; fixed inputs only."""

from __future__ import annotations

from typing import Any

import pytest

from bench import inplace

T0 = inplace.stamp("2026-12-07T05:00:00Z")


def at(s: float) -> str:
    return f"2026-12-07T05:00:{s:09.6f}Z"


ERROR_LOG = [
    f"{at(0.5)} 12 [Note] [MY-010914] [Server] Aborted connection 12 (an older line)",
    "a line without a timestamp",
    f"{at(1.30)} 0 [System] [MY-013172] [Server] Received SHUTDOWN from user root. "
    "Shutting down mysqld (Version: 9.7.4-2).",
    f"{at(1.31)} 0 [Note] [MY-010067] [Server] Giving 2 client threads a chance to die gracefully",
    f"{at(3.31)} 0 [Note] [MY-010118] [Server] Forcefully disconnecting 0 remaining clients",
    f"{at(4.00)} 0 [System] [MY-010910] [Server] /usr/sbin/mysqld: Shutdown complete (mysqld)",
    f"{at(4.10)} 0 [System] [MY-015015] [Server] MySQL Server - start.",
    f"{at(5.00)} 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections.",
    f"{at(9.00)} 0 [System] [MY-013172] [Server] Shutting down mysqld (a later restart)",
]
EVENTS: list[dict[str, Any]] = [
    {"event": "offline.on", "host": "db1", "timestamp": at(1.05)},
    {"event": "offline.on", "host": "db2", "timestamp": at(0.0)},
    {"event": "restart.command", "host": "db1", "timestamp": at(5.10), "duration_s": 4.0},
]


def test_moments_are_the_first_of_each_mark_after_the_start() -> None:
    m = inplace.error_log_moments(ERROR_LOG, since=T0 + 1.0, until=T0 + 8.0)
    assert m["shutdown_asked"] == pytest.approx(T0 + 1.30)
    assert m["closing_end"] - m["closing_start"] == pytest.approx(2.0)
    assert m["ready"] == pytest.approx(T0 + 5.0)
    assert "shutdown_asked" not in inplace.error_log_moments(ERROR_LOG, T0 + 1.4, T0 + 8.0)


def test_an_earlier_restart_in_the_same_log_is_not_taken_for_this_one() -> None:
    m = inplace.error_log_moments(ERROR_LOG, since=T0 + 8.5, until=T0 + 9.5)
    assert m == {"shutdown_asked": pytest.approx(T0 + 9.0)}


def test_run_log_gives_offline_and_when_the_restart_command_was_sent() -> None:
    m = inplace.run_log_moments(EVENTS, "db1")
    assert m == {"offline": pytest.approx(T0 + 1.05), "restart_sent": pytest.approx(T0 + 1.10)}


def test_the_phases_add_up_to_the_gap_in_order() -> None:
    acks = [T0 + 0.9, T0 + 1.0, T0 + 5.05, T0 + 5.1]
    out = inplace.attribute(acks, EVENTS, ERROR_LOG, "db1")
    assert out["gap_s"] == pytest.approx(4.05)
    assert list(out["phases"]) == [
        "last write -> offline_mode",
        "offline_mode -> restart command sent",
        "restart command sent -> shutdown asked (SSH, init script)",
        "shutdown asked -> closing connections",
        "closing connections (client threads)",
        "rest of shutdown (InnoDB, plugins)",
        "shutdown complete -> new mysqld",
        "new mysqld -> ready for connections",
        "ready -> first write",
    ]
    assert out["phases"]["closing connections (client threads)"] == pytest.approx(2.0)
    assert sum(out["phases"].values()) == pytest.approx(out["gap_s"], abs=0.01)


def test_a_moment_the_logs_lack_merges_its_neighbours() -> None:
    """MariaDB's log has other words; without offline_mode the last write follows it."""
    acks = [T0 + 1.2, T0 + 5.05]
    out = inplace.attribute(acks, EVENTS[2:], [], "db1")
    assert out["phases"] == {"gap_start -> gap_end": pytest.approx(3.85)}


def test_a_writer_without_two_writes_has_no_gap() -> None:
    with pytest.raises(ValueError, match="two acknowledged writes"):
        inplace.longest_gap([T0])
