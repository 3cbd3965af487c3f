"""``harestart status``: a read-only document per group, and its table for people."""

from __future__ import annotations

from typing import Any

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.engine.journal import Journal
from harestart.engine.lock import Holder


def status_document(
    group: Group,
    state: GroupState,
    problems: list[str],
    *,
    unfinished: Journal | None = None,
    lock: tuple[Holder | None, bool] = (None, False),
    inventory: str = "INVENTORY",
) -> dict[str, Any]:
    holder, alive = lock
    if alive:
        run_state = "REBOOT"
    elif unfinished is not None:
        run_state = "ERROR"
    else:
        run_state = "ACTIVE" if not problems else "ERROR"
    return {
        "group": group.id,
        "account": group.account,
        "name": group.name,
        "state": run_state,
        "healthy": not problems,
        "problems": problems,
        "unfinished_run": None
        if unfinished is None
        else {
            "run_id": unfinished.run_id,
            "started_at": unfinished.started_at,
            "outcome": unfinished.outcome or "unfinished",
            "summary": unfinished.describe(),
            "resume": f"harestart resume {inventory} --group {group.id}",
        },
        "lock": None
        if holder is None
        else {"holder": holder.describe(), "alive": alive, "stale": not alive},
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
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"  MHA: {doc['mha']['text']}")
    lines += [f"  problem: {p}" for p in doc["problems"]]
    if doc["unfinished_run"]:
        u = doc["unfinished_run"]
        lines.append(f"  UNFINISHED RUN: {u['summary']}")
        lines.append(f"  continue it with: {u['resume']}")
    if doc["lock"]:
        kind = "held by a running" if doc["lock"]["alive"] else "STALE lock of a dead"
        lines.append(f"  lock: {kind} run: {doc['lock']['holder']}")
    return "\n".join(lines)
