"""The write-gap bench's attribution of gaps (no Docker): which gap belongs to the source's
restart step or to a switch, read from a run log, and demo_writer's gap arithmetic it reuses.

Timings are never asserted; only that the figures it prints are computed from the right gaps.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.writegap import cases, parse_size, per_phase, phases, verdict
from lab.demo_writer import unavailable_time, write_gaps


def ev(event: str, at: float, **fields: Any) -> dict[str, Any]:
    stamp = f"2026-01-01T00:00:{at:06.3f}Z"
    return {"event": event, "timestamp": stamp, **fields}


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_gaps_are_between_consecutive_moments_longest_first() -> None:
    gaps = write_gaps([0.0, 0.01, 0.5, 0.51, 0.6])
    assert gaps[0] == pytest.approx((0.49, 0.01))
    assert len(gaps) == 4
    assert unavailable_time(gaps) == pytest.approx(0.49)  # only gaps over 100 ms count


def test_the_source_restart_step_and_each_switch_are_phases() -> None:
    events = [
        ev("step.started", 1.0, step="restart_replica:db2", host="db2"),
        ev("step.started", 10.0, step="restart_source:db1", host="db1"),
        ev("step.finished", 14.0, step="restart_source:db1", host="db1"),
        ev("switch.source_read_only", 20.0, host="db1"),
        ev("switch.promoted", 20.1, host="db2", old_source="db1"),
        ev("hook.finished", 20.4, point="after_switch", host="db2", duration_s=0.2),
        ev("switch.source_read_only", 30.0, host="db2"),
        ev("hook.finished", 30.3, point="after_switch", host="db1"),
    ]
    got = phases(events)
    assert [p["what"] for p in got] == [
        "source restart db1",
        "switch from db1 to db2",
        "switch from db2",
    ]
    assert got[1]["from"] == pytest.approx(T0 + 20.0)
    assert got[1]["to"] == pytest.approx(T0 + 20.4)
    assert got[1]["promoted"] == pytest.approx(T0 + 20.1) and got[1]["hook_s"] == 0.2


def test_each_gap_goes_to_the_phase_it_overlaps_and_the_rest_is_noise() -> None:
    windows = [
        {"what": "switch from db1 to db2", "from": T0 + 20.0, "to": T0 + 20.4},
        {"what": "switch from db2 to db1", "from": T0 + 30.0, "to": T0 + 30.3},
    ]
    gaps = [(0.45, T0 + 20.0), (0.3, T0 + 30.05), (0.2, T0 + 25.0), (0.01, T0 + 29.0)]
    out, noise = per_phase(windows, gaps, T0)
    assert [p["longest_gap_s"] for p in out] == [0.45, 0.3]
    assert [p["at_s"] for p in out] == [20.0, 30.0]
    assert out[0]["unavailable_s"] == 0.45
    assert noise == 0.2


def test_pool_sizes_are_read_in_megabytes_or_gigabytes() -> None:
    assert parse_size("256M") == 256 << 20
    assert parse_size("4g") == 4 << 30
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("4T")


def test_restart_runs_once_per_load_and_switchover_in_every_hook_mode() -> None:
    args = argparse.Namespace(
        repeat=1,
        strategies=["restart", "switchover"],
        hook_modes=["event", "persistent"],
        loads=["quiet", "loaded"],
    )
    got = [(c.strategy, c.mode, c.load) for c in cases(args, 256 << 20)]
    assert got == [
        ("restart", "event", "quiet"),
        ("restart", "event", "loaded"),
        ("switchover", "event", "quiet"),
        ("switchover", "event", "loaded"),
        ("switchover", "persistent", "quiet"),
        ("switchover", "persistent", "loaded"),
    ]
    # Each run its own log file: a repeated case's phases are its own.
    twice = cases(argparse.Namespace(**{**vars(args), "repeat": 2}), 4 << 30)
    assert len({c.label() for c in twice}) == len(twice) == 12
    assert twice[-1].label() == "4GB-switchover-persistent-loaded-2"


def test_each_switchover_is_held_to_the_target_of_its_load() -> None:
    def row(load: str, *gaps: float) -> dict[str, Any]:
        phases = [{"longest_gap_s": g} for g in gaps]
        return {"strategy": "switchover", "load": load, "exit_code": 0, "phases": phases}

    assert verdict(row("quiet", 0.08, 0.1)) == "met (<= 0.1 s)"
    assert verdict(row("quiet", 0.08, 0.12)) == "MISSED (<= 0.1 s)"
    assert verdict(row("loaded", 0.25, 0.3)) == "met (<= 0.3 s)"
    assert verdict({"strategy": "switchover", "load": "quiet", "exit_code": 1}) == "failed run"
    assert verdict({"strategy": "restart", "load": "quiet", "exit_code": 0}) == "-"
