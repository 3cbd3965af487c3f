"""`make bench`'s one report (no Docker): each bench's JSON is recognised and turned into
figures, each with the load it was measured under; the merge and the table are pure.

Fixed inputs shaped like each bench's JSON; timings are never asserted, only where they go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report

LOAD_A = [1.5, 2.25, 3.0]
LOAD_B = [4.0, 5.0, 6.0]


def s(median: float, lo: float, hi: float) -> dict[str, float]:
    return {"median": median, "min": lo, "max": hi}


RESTART: dict[str, Any] = {
    "flavor": "mysql",
    "server": "9.7.4-2",
    "date": "2026-12-07T05:00:00+00:00",
    "targets": {
        "total_vs_floor": 1.15,
        "replica_recovery_s": 1.0,
        "plan_1000_groups_s": 1.0,
        "overhead_per_node_s": 0.3,
    },
    "loadavg": [LOAD_A, LOAD_B],
    "floor": {"total": s(10.0, 9.0, 11.0)},
    "harestart": {"total": s(11.0, 10.0, 12.0)},
    "overhead": {
        "total": s(1.0, 0.5, 1.5),
        "ratio": s(1.1, 1.05, 1.2),
        "per node": {"db2": s(0.2, 0.1, 0.3)},
    },
    "replica_recovery": s(0.3, 0.2, 0.4),
    "source_write_downtime": s(2.8, 2.7, 3.1),
    "raw_source_restart": s(2.5, 2.4, 2.6),
    "plan_1000_groups": s(0.4, 0.4, 0.5),
    "detach": {"detached: source step": s(3.0, 2.9, 3.2)},
    "in_place": {"shutdown": {**s(2.2, 2.1, 2.3), "load": [LOAD_B]}},
}
API: dict[str, Any] = {
    "flavor": "mariadb",
    "started_at": "2026-12-06T23:57:16+00:00",
    "targets": {"paused_p99_s": "< 1 s (answers, bounded)", "healthy_errors": "0"},
    "healthy": {
        "p50_s": 0.05,
        "p99_s": 0.12,
        "max_s": 0.19,
        "errors": 0,
        "requests_per_s": 800.0,
        "loadavg_before": LOAD_A,
        "loadavg_after": LOAD_B,
    },
    "paused": {"p99_s": 0.1, "errors": 0, "loadavg_before": LOAD_B, "loadavg_after": LOAD_B},
    "idle": {},
    "slowloris": {},
}
WRITEGAP: dict[str, Any] = {
    "flavor": "mariadb",
    "date": "2026-12-06T10:00:00+00:00",
    "targets": {"switchover_gap_per_switch_s": {"quiet": 0.1, "loaded": 0.3}},
    "reconfigure_s": {},
    "runs": [
        {
            "pool": "256 MB",
            "strategy": "switchover",
            "hook_mode": "persistent",
            "load": "quiet",
            "longest_gap_s": 0.08,
            "loadavg_before": LOAD_A,
            "loadavg_after": LOAD_A,
        },
        {
            "pool": "256 MB",
            "strategy": "switchover",
            "hook_mode": "persistent",
            "load": "quiet",
            "longest_gap_s": 0.10,
            "loadavg_before": LOAD_B,
            "loadavg_after": LOAD_B,
        },
        {
            "pool": "256 MB",
            "strategy": "restart",
            "hook_mode": "event",
            "load": "quiet",
            "longest_gap_s": 2.5,
            "loadavg_before": LOAD_A,
            "loadavg_after": LOAD_A,
        },
        {
            "pool": "4 GB",
            "strategy": "restart",
            "hook_mode": "event",
            "load": "quiet",
            "error": "RuntimeError()",
        },
    ],
}
SCALE: dict[str, Any] = {
    "date": "2026-12-06T11:00:00+00:00",
    "target_cpu_ms_per_group": 10.0,
    "runs": [
        {
            "groups": 100,
            "parallel": 50,
            "cpu_ms_per_group": 20.0,
            "wall_s": 3.0,
            "peak_rss_mb": 90.0,
            "load_avg": LOAD_B,
        },
        {"groups": 1000, "parallel": 500, "failed": "boom"},
    ],
    "plans": [{"groups": 1000, "wall_s": 0.6, "peak_rss_mb": 80.0, "load_avg": LOAD_A}],
    "plan_profile": None,
}


PREFLIGHT = {
    "bench": "preflight",
    "date": "2026-12-07T05:48:00+00:00",
    "groups": [
        {"groups": 200, "delay_s": 0.05, "preflight_parallel": 1, "wall_s": 20.59,
         "loadavg": LOAD_A},
        {"groups": 200, "delay_s": 0.05, "preflight_parallel": 32, "wall_s": 0.97,
         "loadavg": LOAD_B},
    ],
    "frozen": [
        {"way": "together (now)", "ssh_timeout_s": 10.0, "mysql_timeout_s": 5.0,
         "wall_s": 10.04, "loadavg": LOAD_B},
        {"way": "ssh then mysql (before)", "ssh_timeout_s": 10.0, "mysql_timeout_s": 5.0,
         "wall_s": 15.09, "loadavg": LOAD_B},
    ],
}  # fmt: skip


def test_preflight_figures_per_bound_and_the_frozen_host_against_the_longer_timeout() -> None:
    figs = by_name(report.preflight_figures(PREFLIGHT))
    p32 = figs["preflight, 200 groups, 0.05 s per question, --preflight-parallel 32"]
    assert (p32.value, p32.load, p32.flavor) == (0.97, (tuple(LOAD_B),), "fakes")
    now = figs["a frozen host (SSH 10 s, MySQL 5 s): together (now)"]
    assert (now.value, now.target, now.flavor) == (
        10.04,
        "~ 10 s (the longer timeout)",
        "real adapters",
    )
    assert figs["a frozen host (SSH 10 s, MySQL 5 s): ssh then mysql (before)"].target == ""
    assert len(figs) == 4


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (PREFLIGHT, "preflight"),
        (RESTART, "restart"),
        (API, "api"),
        (WRITEGAP, "writegap"),
        (SCALE, "scale"),
        ({"bench": "scale"}, "scale"),
        ({"something": 1}, None),
    ],
)
def test_each_bench_json_is_told_by_its_shape(doc: dict[str, Any], kind: str | None) -> None:
    assert report.kind_of(doc) == kind


def by_name(figures: list[report.Figure]) -> dict[str, report.Figure]:
    return {f.name: f for f in figures}


def test_restart_figures_are_medians_with_their_spread_targets_and_loads() -> None:
    figs = by_name(report.restart_figures(RESTART))
    ratio = figs["total / floor"]
    assert (ratio.value, ratio.spread, ratio.target) == (1.1, (1.05, 1.2), "<= 1.15")
    assert ratio.load == (tuple(LOAD_A), tuple(LOAD_B))
    assert (ratio.flavor, ratio.bench, ratio.date) == ("mysql", "restart", RESTART["date"])
    assert figs["in_place: shutdown"].value == 2.2
    assert figs["in_place: shutdown"].load == (tuple(LOAD_B),)  # its own runs' load
    assert figs["detach: detached: source step"].spread == (2.9, 3.2)
    assert figs["overhead db2"].target == "<= 0.3 s"


def test_api_figures_carry_each_phase_load_and_target() -> None:
    figs = by_name(report.api_figures(API))
    p99 = figs["paused: p99_s"]
    assert (p99.value, p99.unit, p99.target) == (0.1, "s", "< 1 s (answers, bounded)")
    assert p99.load == (tuple(LOAD_B), tuple(LOAD_B))
    assert figs["healthy: requests_per_s"].unit == ""
    assert figs["healthy: errors"].target == "0"
    assert not [f for f in figs if f.startswith(("idle", "slowloris"))]


def test_writegap_repetitions_merge_into_one_figure_and_failed_runs_are_left_out() -> None:
    figs = by_name(report.writegap_figures(WRITEGAP))
    switch = figs["longest write gap: switchover, 256 MB pool, persistent hooks, quiet"]
    assert switch.value == pytest.approx(0.09)
    assert switch.spread == (0.08, 0.10)
    assert switch.target == "<= 0.1 s per switch"
    assert set(switch.load) == {tuple(LOAD_A), tuple(LOAD_B)}
    restart = figs["longest write gap: restart, 256 MB pool, quiet"]
    assert (restart.target, restart.spread) == ("", None)
    assert len(figs) == 2  # the 4 GB run failed: no figure


def test_scale_figures_skip_failed_runs_and_carry_plan_targets() -> None:
    figs = by_name(report.scale_figures(SCALE))
    cpu = figs["run --all, 100 groups, --parallel-groups 50: cpu_ms_per_group"]
    assert (cpu.value, cpu.target, cpu.load) == (20.0, "< 10 ms", (tuple(LOAD_B),))
    assert figs["plan, 1000 groups: wall"].target == "< 0.5 s"
    assert figs["plan, 1000 groups: peak RSS"].target == ""
    assert not [f for f in figs if "1000 groups, --parallel" in f]


def test_merge_lists_inputs_and_unknown_files_and_keeps_the_header() -> None:
    header = {"date": "D", "commit": "abc", "machine": "m", "loadavg": LOAD_A}
    merged = report.merge(
        [("r.json", RESTART), ("x.json", {"nope": 1}), ("s.json", SCALE)], header=header
    )
    assert merged["commit"] == "abc"
    assert [i["bench"] for i in merged["inputs"]] == ["restart", "scale"]
    assert merged["unknown_inputs"] == ["x.json"]
    assert {f["bench"] for f in merged["figures"]} == {"restart", "scale"}
    json.dumps(merged)  # one JSON document


def test_the_table_has_one_row_per_figure_with_its_load() -> None:
    header = {"date": "D", "commit": "abc123", "machine": "m", "loadavg": LOAD_A}
    merged = report.merge([("a.json", API)], header=header)
    text = report.render_markdown(merged)
    rows = [line for line in text.splitlines() if line.startswith("| api ")]
    assert len(rows) == len(merged["figures"])
    assert "commit abc123" in text
    p99 = next(r for r in rows if "paused: p99_s" in r)
    assert "4.0/5.0/6.0" in p99  # one load: 1/5/15
    healthy = next(r for r in rows if "healthy: p99_s" in r)
    assert "1.5-4.0/2.2-5.0/3.0-6.0" in healthy  # several: each column's range


def test_a_figure_without_a_recorded_load_says_so() -> None:
    assert report.fmt_load([]) == "not recorded"
    assert "No figures" in report.render_markdown(report.merge([], header={}))


def test_the_command_writes_one_json_and_one_table(tmp_path: Path) -> None:
    for name, doc in (("restart-mysql", RESTART), ("scale", SCALE)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "report"
    code = report.main([*map(str, sorted(tmp_path.glob("*.json"))), "--out", str(out)])
    assert code == 0
    merged = json.loads(out.with_suffix(".json").read_text())
    assert {"date", "commit", "machine", "loadavg", "figures"} <= set(merged)
    assert out.with_suffix(".md").read_text().count("| restart ") == len(
        [f for f in merged["figures"] if f["bench"] == "restart"]
    )


def test_unreadable_json_is_one_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert report.main([str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not readable JSON" in capsys.readouterr().err
