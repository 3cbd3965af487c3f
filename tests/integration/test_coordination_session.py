"""One coordination session per bastion process, on a real etcd (issue #24).

Many groups' locks, taken by one process, hang on ONE etcd lease and their holder records on
one membership lease; one heartbeat thread renews them with a constant number of keep-alives
per interval, whatever the number of groups; and when the service stops answering, every
group held is told its lease is lost (each run then stops at its next safe point, as
test_coordination's runs show end to end).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from harestart.adapters.coordination import ToozCoordination
from harestart.domain.group import Group
from harestart.engine.coordination import my_holder
from harestart.errors import LockHeld
from harestart.inventory.load import parse_inventory

from .coord import CoordService
from .lab import wait_for

pytestmark = pytest.mark.integration

N = 40  # groups held by the one process
LEASE = 5  # seconds
ACCOUNT = "100077"


def fleet(url: str) -> tuple[Group, ...]:
    lines = [f"defaults: {{coordination: {{url: '{url}', lease: {LEASE}}}}}", "groups:"]
    for i in range(N):
        lines += [
            f"  - id: sess-{i:02d}",
            f"    account: '{ACCOUNT}'",
            f"    source: {{name: s{i}-db1, address: 10.9.{i}.1}}",
            f"    replicas: [{{name: s{i}-db2, address: 10.9.{i}.2}}]",
            f"    mha: {{manager: {{name: s{i}-mha, address: 10.9.{i}.9}}, config: /etc/mha/x.cnf}}",
        ]
    return parse_inventory("\n".join(lines) + "\n", "inv.yml").groups


def test_many_groups_hang_on_one_lease_and_a_lost_session_stops_them_all(
    etcd: CoordService, tmp_path: Path
) -> None:
    groups = fleet(etcd.url)
    backends = [ToozCoordination(g.coordination, g.id) for g in groups]  # type: ignore[arg-type]
    lost: dict[str, str] = {}
    mutex = threading.Lock()

    def on_lost(group: str) -> Callable[[str], None]:
        def told(reason: str) -> None:
            with mutex:
                lost[group] = reason

        return told

    held = [
        b.acquire(
            g,
            my_holder(command="harestart run", state_dir=tmp_path),
            break_stale=False,
            on_lost=on_lost(g.id),
        )
        for b, g in zip(backends, groups, strict=True)
    ]
    other = ToozCoordination(groups[0].coordination, groups[0].id, scope="another bastion")  # type: ignore[arg-type]
    try:
        session = backends[0]._session
        assert all(b._session is session for b in backends)
        assert session.threads() == 2  # one heartbeat, one watchdog, for forty groups

        # Every lock key on one lease, every holder record on one (the membership) lease.
        base = f"harestart~{ACCOUNT}~sess-"
        locks = etcd.etcd_leases(f"/tooz/locks{base}".encode())
        assert len(locks) == N and len(set(locks.values())) == 1, locks
        records = {
            k: v
            for k, v in etcd.etcd_leases(f"tooz/groups/{base}".encode()).items()
            if "~holder/" in k and not k.endswith("/")
        }
        assert len(records) == N and len(set(records.values())) == 1, records
        assert set(records.values()) != set(locks.values())  # two leases in all, not 2N

        # Heartbeats: a constant number of keep-alives per pass (the two leases), not one
        # per group.
        keepalives, passes = etcd.etcd_requests("LeaseKeepAlive"), session.passes
        wait_for("three heartbeats", lambda: session.passes >= passes + 3, timeout=60)
        done = session.passes - passes
        served = etcd.etcd_requests("LeaseKeepAlive") - keepalives
        assert served <= 2 * (done + 1), (served, done)  # N = 40 would be 40 per pass
        assert lost == {}

        # Another bastion cannot take any of them.
        with pytest.raises(LockHeld, match="harestart run"):
            other.check_free(groups[0], break_stale=True)

        # The service stops answering: every group held is told, once.
        etcd.pause()
        try:
            wait_for("every group told", lambda: len(lost) == N, timeout=LEASE + 30)
        finally:
            etcd.unpause()
        assert all("no heartbeat reached the coordination service" in r for r in lost.values())
        assert session.holds == []
    finally:
        for h in held:
            h.release()
        for b in backends:
            b.close()
        other.close()
    # Released (or expired): the other bastion takes one at once.
    other = ToozCoordination(groups[1].coordination, groups[1].id, scope="third bastion")  # type: ignore[arg-type]
    try:
        wait_for(
            "the locks free",
            lambda: not etcd.etcd_leases(f"/tooz/locks{base}".encode()),
            timeout=LEASE + 30,
        )
        other.check_free(groups[1], break_stale=False)
    finally:
        other.close()
