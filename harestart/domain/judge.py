"""The judge: pure decisions about a group from what was observed, its lock and its journal.

Every view that needs to know whether a group is fine asks here: preflight, resume, verify, the
failure policy, ``harestart status`` and the HTTP API. Nothing here does I/O: the callers read
the lock and the journal (engine) and hand over plain frozen values (:class:`RunFacts`).

A group's state, one rule set for ``status``, ``GET /ha/{id}`` and ``GET /ha`` (first match):

1. ``REBOOT``: a restart runs: a live process holds the group's lock, or a restart started by
   this process (the API server) is running.
2. ``ERROR``: the state directory cannot be trusted, or the journal cannot be used (unreadable,
   malformed, written for another group or inventory): a human must look.
3. ``ERROR``: the journal holds an unfinished run (failed or interrupted; ``resume`` continues
   it).
4. ``ERROR``: a stale lock: a run died holding the group (``--break-lock`` after checking).
5. ``ERROR``: the group was observed and has health problems: exactly what preflight would
   refuse on (a node unreachable, replication that contradicts the inventory or is broken, a
   replica lagging over the limit, MHA unknown, in error or failing over).
6. ``ACTIVE`` otherwise.

Without an observation (``GET /ha`` stays host-free) rule 5 cannot apply: the state speaks of
runs only. Health problems are listed in every verdict that had an observation, whatever the
state, so a REBOOT or ERROR group still shows what is wrong with its nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harestart.domain.dialect import dialect_for
from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.result import GroupStatus
from harestart.domain.topology import Flavor


@dataclass(frozen=True)
class LockView:
    """A group's run lock as read: the holder its file names (described) and whether a live
    process holds it. ``LockView()`` is a free lock."""

    holder: str | None = None
    alive: bool = False
    backend: str = "local"  # where the lock lives: "local" (flock) or the service's URL scheme
    since: str | None = None  # when the holder took it (a tenant's view shows only this)

    @property
    def held(self) -> bool:
        return self.alive or self.holder is not None

    @property
    def stale(self) -> bool:
        """The file names a holder but no process holds the lock: that run died."""
        return self.holder is not None and not self.alive

    def who(self) -> str:
        return self.holder or "an unknown process"

    def for_tenant(self) -> LockView:
        """The lock as a tenant of the API sees it: that a run holds it and since when, not
        the holder's pid, user, host, command or state directory (an operator's)."""
        if not self.held:
            return self
        since = f" since {self.since}" if self.since else ""
        run = "a restart runs" if self.alive else "a restart that died holds the lock"
        return LockView(f"{run}{since}", self.alive, self.backend, self.since)

    def to_dict(self) -> dict[str, Any] | None:
        if not self.held:
            return None
        return {
            "holder": self.who(),
            "alive": self.alive,
            "stale": self.stale,
            "backend": self.backend,
        }


@dataclass(frozen=True)
class RunSummary:
    """An unfinished run of the group, as its journal tells it."""

    run_id: str
    started_at: str
    outcome: str  # failed | interrupted | unfinished (the run itself died)
    summary: str  # one sentence: where it stopped, MHA before

    def to_dict(self, inventory: str, group_id: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "outcome": self.outcome,
            "summary": self.summary,
            "resume": resume_command(inventory, group_id),
        }


def resume_command(inventory: str, group_id: str) -> str:
    """The command that continues a group's unfinished run."""
    return f"harestart resume {inventory} --group {group_id}"


@dataclass(frozen=True)
class RunFacts:
    """What is known of a group's runs without touching a host."""

    lock: LockView = LockView()
    unfinished: RunSummary | None = None
    journal_error: str | None = None  # the journal exists but cannot be used
    state_error: str | None = None  # the state directory (or the lock file) cannot be trusted
    running_here: bool = False  # a restart started by this process is running

    def for_tenant(self) -> RunFacts:
        """The facts a tenant's view is judged from: the lock without its holder's details,
        a journal or state directory problem without its paths (see
        ``LockView.for_tenant``)."""
        look = "an operator must look at it (serve's log and `harestart status` say why)"
        return replace(
            self,
            lock=self.lock.for_tenant(),
            journal_error=None if self.journal_error is None else look,
            state_error=None if self.state_error is None else f"harestart's state: {look}",
        )


@dataclass(frozen=True)
class Verdict:
    """The judge's answer: the group's state, why (one sentence, None when ACTIVE), and the
    health problems found (empty when healthy or not observed)."""

    state: GroupStatus
    reason: str | None
    problems: tuple[str, ...] = ()
    observed: bool = False

    @property
    def healthy(self) -> bool:
        return not self.problems


def judge_group(group: Group, state: GroupState | None, facts: RunFacts) -> Verdict:
    """The group's state by the rules of this module's docstring; ``state`` None: the group
    was not observed (its health is not judged)."""
    problems = tuple(preflight_problems(group, state)) if state is not None else ()

    def verdict(status: GroupStatus, reason: str | None) -> Verdict:
        return Verdict(status, reason, problems, state is not None)

    lock = facts.lock
    if facts.running_here:
        held = f" ({lock.who()})" if lock.held else ""
        return verdict(
            GroupStatus.REBOOT, f"a restart requested through this API holds the group{held}"
        )
    if lock.alive:
        return verdict(GroupStatus.REBOOT, f"another harestart run holds the group ({lock.who()})")
    if facts.state_error is not None:
        return verdict(GroupStatus.ERROR, facts.state_error)
    if facts.journal_error is not None:
        return verdict(GroupStatus.ERROR, f"the run journal cannot be used: {facts.journal_error}")
    if facts.unfinished is not None:
        return verdict(GroupStatus.ERROR, f"a run did not finish: {facts.unfinished.summary}")
    if lock.stale:
        return verdict(GroupStatus.ERROR, f"a run died holding the group's lock: {lock.who()}")
    if problems:
        n = len(problems)
        return verdict(
            GroupStatus.ERROR,
            f"not healthy ({n} problem{'s' if n != 1 else ''}): {'; '.join(problems)}",
        )
    return verdict(GroupStatus.ACTIVE, None)


def replication_problems(group: Group, state: GroupState) -> list[str]:
    """Every way the observed replication contradicts the inventory (by server_id)."""
    problems: list[str] = []
    source = state.node(group.source.name)
    if source.info is None:
        return problems  # reachability is reported separately
    src_id = source.info.server_id
    ids: dict[int, str] = {}
    for n in state.nodes:
        if n.info is None:
            continue
        if n.info.server_id in ids:
            problems.append(
                f"{n.name} and {ids[n.info.server_id]} have the same server_id {n.info.server_id}"
            )
        ids.setdefault(n.info.server_id, n.name)
    for r in group.replicas:
        n = state.node(r.name)
        if n.info is None:
            continue
        rs = n.replica
        if rs is None:
            problems.append(f"{r.name} is listed as a replica but is not replicating at all")
            continue
        if rs.source_server_id is not None and rs.source_server_id != src_id:
            problems.append(
                f"{r.name} replicates from server_id {rs.source_server_id} "
                f"({rs.source_host}:{rs.source_port}), not from the listed source "
                f"{group.source.name} (server_id {src_id})"
            )
        if rs.broken():
            problems.append(f"{r.name}: replication is broken: {rs.error_text()}")
        elif not rs.threads_running():
            problems.append(
                f"{r.name}: replication threads are not both running "
                f"(IO {rs.io_running}, SQL {rs.sql_running})"
            )
    return problems


def preflight_problems(
    group: Group, state: GroupState, *, max_lag: float | None = None
) -> list[str]:
    """Every reason not to start a restart of ``group`` in ``state``; empty when safe."""
    problems = mha_safe_problems(group, state)
    limit = group.health.max_lag if max_lag is None else max_lag
    for r in group.replicas:
        rs = state.node(r.name).replica
        if rs is not None and rs.threads_running() and not rs.lag_within(limit):
            problems.append(
                f"{r.name}: lags {rs.lag_seconds} s behind the source (max {limit:g} s)"
            )
    return problems + flavor_problems(group, state) + mha_unsafe(group, state)


# The servers each inventory `flavor:` promises: the plan's words are theirs.
_FLAVOR_PROMISE = {
    Flavor.MARIADB: "MariaDB",
    Flavor.MYSQL: "MySQL 8.0.22 or later",
}


def flavor_problems(group: Group, state: GroupState) -> list[str]:
    """A server that is not what the inventory's ``flavor:`` says: the plan a person read was
    written in other words than the run would send (e.g. REPLICA to a MySQL 5.7)."""
    if group.flavor is None:
        return []
    problems = []
    for n in state.nodes:
        if n.info is None:
            continue
        d = dialect_for(n.info.version)
        kept = d.flavor is group.flavor and (
            d.flavor is Flavor.MARIADB or d.replica_word == "REPLICA"
        )
        if not kept:
            problems.append(
                f"{n.name} runs {n.info.version}, but the inventory says `flavor: "
                f"{group.flavor.value}` ({_FLAVOR_PROMISE[group.flavor]}): fix the inventory"
            )
    return problems


def resume_problems(
    group: Group, state: GroupState, topology: dict[str, Any], resumable_host: str | None
) -> list[str]:
    """Reasons ``resume`` must refuse: the group is not the one the run began on, or unsafe.

    ``resumable_host`` (the node whose restart was cut short) may be down: resume starts it.
    """
    problems: list[str] = []
    if topology.get("source") != group.source.name:
        problems.append(
            f"the run began with source {topology.get('source')}, the inventory now says "
            f"{group.source.name}"
        )
    replicas = topology.get("replicas") or {}
    if sorted(replicas) != sorted(r.name for r in group.replicas):
        problems.append(
            f"the run began with replicas {', '.join(sorted(replicas))}, the inventory now lists "
            f"{', '.join(sorted(r.name for r in group.replicas))}"
        )
    for n in state.nodes:
        if n.info is None:
            if n.name == resumable_host and n.ssh_error is None:
                continue
            problems.append(n.describe())
            continue
        was = topology.get("source_server_id") if n.role == "source" else replicas.get(n.name)
        if was is not None and n.info.server_id != was:
            problems.append(
                f"{n.name} now has server_id {n.info.server_id}, it had {was} when the run began"
            )
    return problems + replication_problems(group, state) + mha_unsafe(group, state)


def mha_unsafe(group: Group, state: GroupState) -> list[str]:
    """Why MHA's state forbids starting or resuming a run: unknown, failing over, in error."""
    if state.mha is None:
        return [f"MHA manager {group.mha.manager.name}: status unknown: {state.mha_error}"]
    if state.mha.failover_in_progress():
        return [f"MHA is failing over right now: {state.mha.describe()}"]
    if state.mha.error():
        return [f"MHA is in an error state: {state.mha.describe()}"]
    return []


def unreachable(state: GroupState) -> list[str]:
    """Every node that did not answer (SSH or MySQL), described."""
    return [n.describe() for n in state.nodes if not n.reachable]


def mha_safe_problems(group: Group, state: GroupState) -> list[str]:
    """Reasons MHA must not be started again after a failed run (it would fail over onto a
    broken topology): an unreachable node or replication that contradicts the inventory."""
    return unreachable(state) + replication_problems(group, state)


def verify_problems(group: Group, state: GroupState, *, mha_expected: bool) -> list[str]:
    """Reasons the group is not back to what a finished restart promises: every node answers,
    every replica replicates from the source within the lag limit, and MHA monitors again
    (when it was running before the run)."""
    problems = mha_safe_problems(group, state)
    for r in group.replicas:
        rs = state.node(r.name).replica
        if rs is not None and not rs.lag_within(group.health.max_lag):
            problems.append(f"{r.name}: lag {rs.lag_seconds} s")
    if mha_expected and (state.mha is None or not state.mha.healthy()):
        problems.append(f"MHA is not monitoring: {state.mha_text()}")
    return problems
