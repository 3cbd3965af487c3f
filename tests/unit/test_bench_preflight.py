"""``bench.preflight`` runs and reports what it measured (never asserting a time)."""

from __future__ import annotations

from pathlib import Path

import structlog

from bench import preflight


def test_groups_measure_prepares_every_group() -> None:
    row = preflight.measure_groups(groups=3, delay=0.0, parallel=2)
    assert row["ready"] == 3 and row["preflight_parallel"] == 2
    assert len(row["loadavg"]) == 3 and row["wall_s"] >= 0
    structlog.reset_defaults()


def test_a_frozen_host_is_reported_unreachable_both_ways() -> None:
    rows = preflight.measure_frozen(ssh_timeout=0.3, mysql_timeout=0.2)
    assert [r["way"] for r in rows] == ["together (now)", "ssh then mysql (before)"]
    now = rows[0]["observed"]
    assert "ssh_error=" in now and "mysql_error=" in now and "timed out" in now, now
    structlog.reset_defaults()


def test_the_command_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    argv = ["--groups", "2", "--delay", "0", "--parallel", "1,2", "--json", str(out)]
    argv += ["--ssh-timeout", "0.3", "--mysql-timeout", "0.2"]
    assert preflight.main(argv) == 0
    doc = out.read_text()
    assert '"preflight_parallel": 2' in doc and '"frozen"' in doc
    structlog.reset_defaults()
