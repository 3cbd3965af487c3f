"""Where the write gap of an in-place source restart goes (#24, "MySQL in place"): pure
functions over three clocks' records, all wall time (the containers share the host's clock).

- the writer's acknowledged writes: the gap is between the last one before the restart and
  the first one after;
- harestart's run log (structlog JSON): when it turned offline_mode on and sent the restart
  command (``restart.command`` is logged when the command returns, with its ``duration_s``);
- mysqld's error log (MySQL, ``log_timestamps=UTC``; the bench raises ``log_error_verbosity``
  to 3 before the run so the shutdown's connection phase is logged): when the shutdown was
  asked, how long it gave client threads "a chance to die gracefully", when it completed, when
  the new process started, and when it was ready for connections.

``phases`` cuts the gap into consecutive pieces that add up to it; a moment the logs do not
show (MariaDB's log has other words) leaves its neighbours merged, never a wrong figure.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

# mysqld's error log lines (MySQL 8.0-9.x, English) that mark each moment; first match wins.
MARKS: tuple[tuple[str, str], ...] = (
    ("shutdown_asked", "Shutting down mysqld"),
    ("closing_start", "client threads a chance to die gracefully"),
    ("closing_end", "Forcefully disconnecting"),
    ("shutdown_complete", "Shutdown complete"),
    ("process_start", "MySQL Server - start."),
    ("ready", "ready for connections"),
)

# (phase, from, to): consecutive moments; a missing moment merges its two phases.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("last write -> offline_mode", "gap_start", "offline"),
    ("offline_mode -> restart command sent", "offline", "restart_sent"),
    ("restart command sent -> shutdown asked (SSH, init script)", "restart_sent", "shutdown_asked"),
    ("shutdown asked -> closing connections", "shutdown_asked", "closing_start"),
    ("closing connections (client threads)", "closing_start", "closing_end"),
    ("rest of shutdown (InnoDB, plugins)", "closing_end", "shutdown_complete"),
    ("shutdown complete -> new mysqld", "shutdown_complete", "process_start"),
    ("new mysqld -> ready for connections", "process_start", "ready"),
    ("ready -> first write", "ready", "gap_end"),
)


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def error_log_moments(lines: Iterable[str], since: float, until: float) -> dict[str, float]:
    """The first line of each mark between ``since`` and ``until`` (lines without a timestamp
    skipped): one restart's, even when the log holds earlier ones a few seconds before."""
    found: dict[str, float] = {}
    for line in lines:
        head, _, rest = line.partition(" ")
        try:
            at = stamp(head)
        except ValueError:
            continue
        if not since <= at <= until:
            continue
        for name, words in MARKS:
            if name not in found and words in rest:
                found[name] = at
    return found


def run_log_moments(events: Iterable[dict[str, Any]], source: str) -> dict[str, float]:
    """When harestart turned offline_mode on and sent the source's restart command."""
    found: dict[str, float] = {}
    for e in events:
        if e.get("host") != source:
            continue
        if e.get("event") == "offline.on":
            found.setdefault("offline", stamp(e["timestamp"]))
        elif e.get("event") == "restart.command" and "duration_s" in e:
            found.setdefault("restart_sent", stamp(e["timestamp"]) - float(e["duration_s"]))
    return found


def longest_gap(acks: Sequence[float]) -> tuple[float, float]:
    """(last ack before, first ack after) the longest gap between acknowledged writes."""
    if len(acks) < 2:
        raise ValueError("the writer needs two acknowledged writes to have a gap")
    return max(itertools.pairwise(sorted(acks)), key=lambda p: p[1] - p[0])


def phases(moments: dict[str, float]) -> dict[str, float]:
    """The gap cut at every moment known inside it; the pieces add up to the gap."""
    start, end = moments["gap_start"], moments["gap_end"]
    inside = [
        (name, at)
        for name, at in moments.items()
        if name not in ("gap_start", "gap_end") and start <= at <= end
    ]
    order = {name: i for i, (_, name, _) in enumerate(PHASES)}
    order["gap_end"] = len(PHASES)
    inside.sort(key=lambda m: order.get(m[0], -1))
    cuts = [("gap_start", start), *inside, ("gap_end", end)]
    labels = {(a, b): label for label, a, b in PHASES}
    out: dict[str, float] = {}
    for (a, t0), (b, t1) in itertools.pairwise(cuts):
        out[labels.get((a, b), f"{a} -> {b}")] = round(max(t1 - t0, 0.0), 3)
    return out


def attribute(
    acks: Sequence[float], events: Iterable[dict[str, Any]], error_log: Iterable[str], source: str
) -> dict[str, Any]:
    """The longest write gap and its phases, from the three records of one run."""
    g0, g1 = longest_gap(acks)
    moments = {
        "gap_start": g0,
        "gap_end": g1,
        **run_log_moments(events, source),
        # The last write may follow the shutdown's first line by a few ms (it was in flight).
        **error_log_moments(error_log, g0 - 1.0, g1),
    }
    return {"gap_s": round(g1 - g0, 3), "phases": phases(moments)}
