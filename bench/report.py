"""`make bench`'s one report: every bench's figures in one JSON and one table.

    python -m bench.report [JSON ...] [--out build/bench/report]

Reads the JSON files the benches wrote (default: ``build/bench/*.json``, where `make bench`
puts them) and writes ``OUT.json`` and ``OUT.md`` (a Markdown table, also printed). Each
bench stays runnable alone and keeps its own JSON; this module only reads them:

- ``python -m bench`` (restart timings on a lab cluster, per flavour),
- ``python -m bench.api`` (``harestart serve`` under load),
- ``python -m bench.writegap`` (write gaps through HAProxy, restart vs switchover),
- ``python -m bench.scale`` (simulated fleets, ``harestart plan`` at scale).

A file's kind is told by its shape (the benches' JSON has no common header), so files from
before this report are read too. Every figure carries the load averages (1/5/15 min,
``os.getloadavg()``) it was measured under, as its bench recorded them, the bench's date
and flavour; the report adds the commit and the machine. A figure whose bench recorded no load
says so. The report asserts nothing: the targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "build" / "bench"

Load = tuple[float, float, float]

# Issue #24's plan targets (groups: wall s, peak MB), as bench.scale prints them.
PLAN_TARGETS: dict[int, tuple[float, float | None]] = {1_000: (0.5, None), 10_000: (3.0, 300.0)}


@dataclass(frozen=True)
class Figure:
    """One measured figure: what, how much, under which load, against which target."""

    bench: str
    flavor: str
    name: str
    value: float | None
    unit: str
    spread: tuple[float, float] | None = None  # min, max over the repetitions
    target: str = ""
    load: tuple[Load, ...] = ()  # the load averages it was measured under (may be several)
    date: str = ""


def _load(value: Any) -> Load | None:
    if isinstance(value, list | tuple) and len(value) == 3:
        return (round(float(value[0]), 2), round(float(value[1]), 2), round(float(value[2]), 2))
    return None


def _loads(*values: Any) -> tuple[Load, ...]:
    return tuple(x for x in (_load(v) for v in values) if x is not None)


# --- one extractor per bench: its JSON -> figures (pure) -------------------------------------


def kind_of(doc: dict[str, Any]) -> str | None:
    """Which bench wrote ``doc``: an explicit ``bench`` key, else its shape."""
    if isinstance(doc.get("bench"), str):
        return str(doc["bench"])
    if "floor" in doc and "harestart" in doc:
        return "restart"
    if "healthy" in doc and "slowloris" in doc:
        return "api"
    if "runs" in doc and "reconfigure_s" in doc:
        return "writegap"
    if "runs" in doc and "plans" in doc:
        return "scale"
    return None


def _summary_figure(
    bench: str, doc: dict[str, Any], name: str, s: Any, unit: str = "s", target: str = ""
) -> Figure | None:
    if not isinstance(s, dict) or "median" not in s:
        return None
    return Figure(
        bench=bench,
        flavor=str(doc.get("flavor", "")),
        name=name,
        value=float(s["median"]),
        unit=unit,
        spread=(float(s["min"]), float(s["max"])),
        target=target,
        # A figure's own runs' loads where the bench gave them, else all of its runs'.
        load=_loads(*s.get("load", doc.get("loadavg", ()))),
        date=str(doc.get("date", "")),
    )


def restart_figures(doc: dict[str, Any]) -> list[Figure]:
    """``python -m bench``: medians (min-max) over its repetitions."""
    t = doc.get("targets", {})
    picks: list[tuple[str, Any, str, str]] = [
        ("floor total (raw restarts + MHA)", doc.get("floor", {}).get("total"), "s", ""),
        ("harestart run total", doc.get("harestart", {}).get("total"), "s", ""),
        ("overhead (total - floor)", doc.get("overhead", {}).get("total"), "s", ""),
        (
            "total / floor",
            doc.get("overhead", {}).get("ratio"),
            "x",
            f"<= {t['total_vs_floor']}" if "total_vs_floor" in t else "",
        ),
        (
            "replica recovery",
            doc.get("replica_recovery"),
            "s",
            f"<= {t['replica_recovery_s']} s" if "replica_recovery_s" in t else "",
        ),
        ("raw source restart", doc.get("raw_source_restart"), "s", ""),
        ("source write downtime", doc.get("source_write_downtime"), "s", ""),
        (
            "plan of 1,000 groups",
            doc.get("plan_1000_groups"),
            "s",
            f"< {t['plan_1000_groups_s']} s" if "plan_1000_groups_s" in t else "",
        ),
    ]
    for section in ("detach", "preflush", "in_place"):
        for key, s in doc.get(section, {}).items():
            picks.append((f"{section}: {key}", s, "s", ""))
    for node, s in doc.get("overhead", {}).get("per node", {}).items():
        target = f"<= {t['overhead_per_node_s']} s" if "overhead_per_node_s" in t else ""
        picks.append((f"overhead {node}", s, "s", target))
    out = [_summary_figure("restart", doc, n, s, u, tg) for n, s, u, tg in picks]
    return [f for f in out if f is not None]


API_KEYS = ("requests_per_s", "p50_s", "p99_s", "max_s", "errors", "new_client_max_s")
API_PHASES = ("healthy", "paused", "idle", "slowloris")


def api_figures(doc: dict[str, Any]) -> list[Figure]:
    """``python -m bench.api``: each phase's latency and errors, with its phase's load."""
    out: list[Figure] = []
    targets = doc.get("targets", {})
    for phase in API_PHASES:
        figures = doc.get(phase) or {}
        for key in (*API_KEYS, "closed_early"):
            if not isinstance(figures.get(key), int | float):
                continue
            out.append(
                Figure(
                    bench="api",
                    flavor=str(doc.get("flavor", "")),
                    name=f"{phase}: {key}",
                    value=float(figures[key]),
                    unit="s" if key.endswith("_s") and key != "requests_per_s" else "",
                    target=str(targets.get(f"{phase}_{key}", "")),
                    load=_loads(figures.get("loadavg_before"), figures.get("loadavg_after")),
                    date=str(doc.get("started_at", "")),
                )
            )
    return out


def writegap_figures(doc: dict[str, Any]) -> list[Figure]:
    """``python -m bench.writegap``: the longest write gap of each case, repetitions merged."""
    targets = doc.get("targets", {}).get("switchover_gap_per_switch_s", {})
    cases: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in doc.get("runs", []):
        if row.get("longest_gap_s") is None:
            continue
        key = (row["pool"], row["strategy"], row["hook_mode"], row["load"])
        cases.setdefault(key, []).append(row)
    out = []
    for (pool, strategy, mode, load), rows in cases.items():
        gaps = [float(r["longest_gap_s"]) for r in rows]
        hooks = f", {mode} hooks" if strategy == "switchover" else ""
        target = targets.get(load) if strategy == "switchover" else None
        out.append(
            Figure(
                bench="writegap",
                flavor=str(doc.get("flavor", "mariadb")),
                name=f"longest write gap: {strategy}, {pool} pool{hooks}, {load}",
                value=statistics.median(gaps),
                unit="s",
                spread=(min(gaps), max(gaps)) if len(gaps) > 1 else None,
                target=f"<= {target} s per switch" if target is not None else "",
                load=_loads(
                    *(x for r in rows for x in (r.get("loadavg_before"), r.get("loadavg_after")))
                ),
                date=str(doc.get("date", "")),
            )
        )
    return out


def scale_figures(doc: dict[str, Any]) -> list[Figure]:
    """``python -m bench.scale``: CPU per group per fleet run; wall and memory per plan."""
    out = []
    cpu_target = doc.get("target_cpu_ms_per_group")
    for r in doc.get("runs", []):
        if "cpu_ms_per_group" not in r:
            continue
        fleet = f"run --all, {r['groups']} groups, --parallel-groups {r['parallel']}"
        for key, unit, target in (
            ("cpu_ms_per_group", "ms", f"< {cpu_target:g} ms" if cpu_target else ""),
            ("wall_s", "s", ""),
            ("peak_rss_mb", "MB", ""),
        ):
            if key in r:
                out.append(_scale(doc, f"{fleet}: {key}", r[key], unit, target, r))
    for p in doc.get("plans", []):
        wall, mb = PLAN_TARGETS.get(p["groups"], (None, None))
        name = f"plan, {p['groups']} groups"
        out.append(_scale(doc, f"{name}: wall", p.get("wall_s"), "s", _lt(wall, "s"), p))
        out.append(_scale(doc, f"{name}: peak RSS", p.get("peak_rss_mb"), "MB", _lt(mb, "MB"), p))
    return out


def preflight_figures(doc: dict[str, Any]) -> list[Figure]:
    """``python -m bench.preflight``: prepare of N simulated groups per bound; a frozen host."""
    out = []
    for r in doc.get("groups", []):
        name = (
            f"preflight, {r['groups']} groups, {r['delay_s']:g} s per question, "
            f"--preflight-parallel {r['preflight_parallel']}"
        )
        out.append(_row_figure(doc, "preflight", name, r.get("wall_s"), "s", "", r))
    for r in doc.get("frozen", []):
        name = (
            f"a frozen host (SSH {r['ssh_timeout_s']:g} s, MySQL {r['mysql_timeout_s']:g} s): "
            f"{r['way']}"
        )
        limit = max(r["ssh_timeout_s"], r["mysql_timeout_s"])
        target = f"~ {limit:g} s (the longer timeout)" if "now" in r["way"] else ""
        out.append(_row_figure(doc, "preflight", name, r.get("wall_s"), "s", target, r))
    return out


def _row_figure(
    doc: dict[str, Any], bench: str, name: str, value: Any, unit: str, target: str, row: Any
) -> Figure:
    return Figure(
        bench=bench,
        flavor="fakes" if "delay_s" in row else "real adapters",
        name=name,
        value=float(value) if isinstance(value, int | float) else None,
        unit=unit,
        target=target,
        load=_loads(row.get("loadavg")),
        date=str(doc.get("date", "")),
    )


def _lt(limit: float | None, unit: str) -> str:
    return f"< {limit:g} {unit}" if limit is not None else ""


def _scale(
    doc: dict[str, Any], name: str, value: Any, unit: str, target: str, row: dict[str, Any]
) -> Figure:
    return Figure(
        bench="scale",
        flavor="fakes",
        name=name,
        value=float(value) if isinstance(value, int | float) else None,
        unit=unit,
        target=target,
        load=_loads(row.get("load_avg")),
        date=str(doc.get("date", "")),
    )


EXTRACTORS: dict[str, Callable[[dict[str, Any]], list[Figure]]] = {
    "restart": restart_figures,
    "api": api_figures,
    "writegap": writegap_figures,
    "scale": scale_figures,
    "preflight": preflight_figures,
}


# --- merge and render (pure) ------------------------------------------------------------------


def merge(
    sources: Sequence[tuple[str, dict[str, Any]]], *, header: dict[str, Any]
) -> dict[str, Any]:
    """One report from (file name, JSON) pairs: the header (date, commit, machine, load now),
    each source's kind, date and flavour, and every figure; unknown files are listed apart."""
    figures: list[Figure] = []
    inputs, unknown = [], []
    for name, doc in sources:
        kind = kind_of(doc)
        if kind is None or kind not in EXTRACTORS:
            unknown.append(name)
            continue
        found = EXTRACTORS[kind](doc)
        figures += found
        date = doc.get("date") or doc.get("started_at") or ""
        inputs.append(
            {
                "file": name,
                "bench": kind,
                "flavor": doc.get("flavor", ""),
                "date": date,
                "figures": len(found),
            }
        )
    return {
        **header,
        "inputs": inputs,
        "unknown_inputs": unknown,
        "figures": [asdict(f) for f in figures],
    }


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
    return f"{text} {unit}".strip()


def fmt_spread(spread: Sequence[float] | None) -> str:
    return f"{spread[0]:.3g}-{spread[1]:.3g}" if spread else ""


def fmt_load(loads: Iterable[Sequence[float]]) -> str:
    """``1/5/15`` for one measurement; each column's min-max when several fed the figure."""
    rows = [tuple(x) for x in loads]
    if not rows:
        return "not recorded"
    cols = []
    for i in range(3):
        lo, hi = min(r[i] for r in rows), max(r[i] for r in rows)
        cols.append(f"{lo:.1f}" if lo == hi else f"{lo:.1f}-{hi:.1f}")
    return "/".join(cols)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table (a header paragraph, then one row per figure)."""
    now_load = "loadavg" in report
    lines = [
        f"# harestart bench report — {report.get('date', '')}",
        "",
        f"commit {report.get('commit', '?')} · {report.get('machine', '')} · load average "
        f"when the report was written {fmt_load([report['loadavg']] if now_load else [])}",
        "",
        "| bench | flavour | figure | value | min-max | target | load 1/5/15 min | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in report.get("figures", []):
        cells = (
            f["bench"],
            f["flavor"],
            f["name"],
            fmt_value(f["value"], f["unit"]),
            fmt_spread(f["spread"]),
            f["target"],
            fmt_load(f["load"]),
            f["date"],
        )
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    if report.get("unknown_inputs"):
        lines += ["", "Not a bench's JSON (skipped): " + ", ".join(report["unknown_inputs"])]
    if not report.get("figures"):
        lines += ["", "No figures: run the benches first (`make bench`)."]
    return "\n".join(lines) + "\n"


# --- the command ------------------------------------------------------------------------------


def commit() -> str:
    """The checked-out commit, ``+dirty`` with uncommitted changes; ``?`` outside git."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
        return run.stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.report", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "inputs", nargs="*", type=Path, help="bench JSON files (default: build/bench/*.json)"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_DIR / "report", help="writes OUT.json and OUT.md"
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    paths = args.inputs or sorted(p for p in DEFAULT_DIR.glob("*.json") if p.stem != out.stem)
    sources = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"bench.report: {path}: not readable JSON ({exc})", file=sys.stderr)
            return 2
        sources.append((str(path), doc if isinstance(doc, dict) else {}))
    header = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()})",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    report = merge(sources, header=header)
    text = render_markdown(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"JSON: {out.with_suffix('.json')}\nTable: {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
