"""``harestart status``: a read-only document per group, and its table for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harestart.domain.group import Group
from harestart.domain.judge import LockView, RunFacts, RunSummary, Verdict, judge_group
from harestart.domain.observation import GroupState
from harestart.engine.coordination import (
    CoordinationFactory,
    UnfinishedMark,
    is_here,
    local_coordination,
    opened,
)
from harestart.engine.run import Environment
from harestart.engine.state.journal import find_journal
from harestart.errors import CoordinationUnavailable, JournalError, StateDirError


def read_run_facts(
    where: Environment | Path,
    group: Group,
    *,
    running_here: bool = False,
    inventory: str | None = None,
) -> RunFacts:
    """The group's lock and unfinished run as the judge takes them: the lock and the unfinished
    mark through the group's coordination backend (every machine sees the same holder), the
    journal from the state directory (``where``: an Environment, or a state directory for the
    local lock), checked against the group and the ``inventory`` file it is read for.

    Never raises for what is on disk: a journal that cannot be used (unreadable, malformed,
    another group's or inventory's) or a state directory that cannot be trusted is a fact the
    judge turns into ERROR with its reason."""
    factory: CoordinationFactory
    if isinstance(where, Path):
        state_dir, factory = where, local_coordination
    else:
        state_dir, factory = where.state_dir, where.coordination
    try:
        lock, mark = _lock_and_mark(group, state_dir, factory)
        journal = find_journal(state_dir, group.account, group.id, inventory)
    except StateDirError as exc:
        return RunFacts(state_error=str(exc), running_here=running_here)
    except JournalError as exc:
        return RunFacts(lock, journal_error=str(exc), running_here=running_here)
    unfinished = None
    if journal is not None and not journal.finished:
        unfinished = RunSummary(
            journal.run_id,
            journal.started_at,
            journal.outcome or "unfinished",
            journal.describe(),
        )
    elif mark is not None and not is_here(mark, state_dir):
        unfinished = RunSummary(
            mark.run_id, mark.started_at, "unfinished", f"on another bastion: {mark.describe()}"
        )
    return RunFacts(lock, unfinished, running_here=running_here)


def _lock_and_mark(
    group: Group, state_dir: Path, factory: CoordinationFactory
) -> tuple[LockView, UnfinishedMark | None]:
    backend = group.coordination.scheme if group.coordination is not None else "local"
    try:
        with opened(factory, group, state_dir) as coord:
            return coord.lock_view(group), coord.unfinished(group)
    except CoordinationUnavailable as exc:
        # Nobody can tell who holds the group: not free, not a live holder either.
        return LockView(f"unknown: {'; '.join(exc.reasons)}", False, backend), None


def run_documents(
    verdict: Verdict, facts: RunFacts, *, inventory: str, group_id: str
) -> dict[str, Any]:
    """The judged fields shared by ``status`` and the API: state, reason, health, unfinished
    run (with the command that resumes it) and lock."""
    return {
        "state": verdict.state.value,
        "state_reason": verdict.reason,
        "healthy": verdict.healthy,
        "problems": list(verdict.problems),
        "unfinished_run": None
        if facts.unfinished is None
        else facts.unfinished.to_dict(inventory, group_id),
        "lock": facts.lock.to_dict(),
    }


def status_document(
    group: Group,
    state: GroupState,
    facts: RunFacts,
    *,
    inventory: str = "INVENTORY",
) -> dict[str, Any]:
    verdict = judge_group(group, state, facts)
    return {
        "group": group.id,
        "account": group.account,
        "name": group.name,
        **run_documents(verdict, facts, inventory=inventory, group_id=group.id),
        **state.to_dict(),
    }


def render_status_text(doc: dict[str, Any]) -> str:
    head = ("node", "role", "version", "uptime", "ro", "IO", "SQL", "lag", "from", "GTID")
    rows: list[tuple[str, ...]] = [head]
    for n in doc["nodes"]:
        if not n["reachable"]:
            err = n.get("ssh_error") or n.get("mysql_error") or "unreachable"
            rows.append((n["name"], n["role"], f"UNREACHABLE: {err}", "", "", "", "", "", "", ""))
            continue
        r = n.get("replication") or {}
        rows.append(
            (
                n["name"],
                n["role"],
                n["version"],
                f"{n['uptime_s']}s",
                ("1s" if n.get("super_read_only") else "1") if n["read_only"] else "0",
                r.get("io_running", "-"),
                r.get("sql_running", "-"),
                "-" if r.get("lag_s") is None else f"{r['lag_s']}s",
                "-" if r.get("source_server_id") is None else f"id {r['source_server_id']}",
                n.get("gtid_position") or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        f"group {doc['group']} (account {doc['account']}): {doc['state']}, "
        f"{'healthy' if doc['healthy'] else 'NOT healthy'}"
    ]
    if doc["state_reason"]:
        lines.append(f"  why: {doc['state_reason']}")
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"  MHA: {doc['mha']['text']}")
    lines += _pending_lines(doc["nodes"])
    lines += [f"  problem: {p}" for p in doc["problems"]]
    if doc["unfinished_run"]:
        u = doc["unfinished_run"]
        lines.append(f"  UNFINISHED RUN: {u['summary']}")
        lines.append(f"  continue it with: {u['resume']}")
    if doc["lock"]:
        kind = "held by a running" if doc["lock"]["alive"] else "STALE lock of a dead"
        lines.append(f"  lock: {kind} run: {doc['lock']['holder']}")
    return "\n".join(lines)


def _pending_lines(nodes: list[dict[str, Any]]) -> list[str]:
    """Each node's pending restarts, then its drift, one reason a line (nothing when the
    observation did not look for them)."""
    if not any("pending_restart" in n for n in nodes):
        return []
    lines = [
        f"  pending restart: {n['name']}: {r['kind']}: {r['text']}"
        for n in nodes
        for r in n.get("pending_restart", [])
    ]
    if not lines:
        lines.append("  pending restart: none")
    lines += [
        f"  config drift: {n['name']}: {r['kind']}: {r['text']}"
        for n in nodes
        for r in n.get("config_drift", [])
    ]
    return lines
