"""Prometheus metrics: ``GET /metrics`` of ``harestart serve`` and ``run/resume
--metrics-textfile`` (node_exporter's textfile collector) write the same families.

Names and labels follow the Prometheus conventions: base units (``_seconds``), counters end
in ``_total``, and no label takes a per-run or per-request value (run ids, request ids, raw
paths): ``account`` and ``group`` (one series per inventory group) are the finest labels.

- ``harestart_group_state{account,group,state}``: 1 for the group's state (ACTIVE, REBOOT,
  ERROR, as ``status`` and ``GET /ha/{id}`` judge it), 0 for the two others;
- ``harestart_mha_running{account,group}``: 1 when ``masterha_check_status`` said the manager
  runs, 0 when it said it does not or could not be asked;
- ``harestart_lock_held{account,group}``: 1 while the group's run lock is held (by a live run,
  or a stale lock a dead run left), else 0;
- ``harestart_observation_age_seconds{account,group}``: age of the observation ``serve``
  answers from (absent until the group was observed once);
- ``harestart_node_pending_restart{account,group,node,reason}``: 1 per kind of reason a node
  needs a restart for (config, persisted, binary, library, package, mark, unknown), as the
  latest observation found them; a series disappears when its reason is gone (a node is a
  label here: a group has a handful, and a node's pending restart is the question asked);
- ``harestart_restarts_total{account,group,result}``: restarts by result
  (ok | failed | interrupted | refused);
- ``harestart_restart_duration_seconds``: histogram of whole restarts, without labels: a
  histogram costs one series per bucket, so per-group labels would multiply an inventory of
  thousands of groups by its buckets, and the question it answers (how long does a restart
  take, p50/p99) is about the fleet; each run's own duration is in its result and journal;
- ``harestart_step_duration_seconds{step}``: histogram per step kind (stop_failover,
  restart_replica, restart_source, start_failover, verify, ...), never per node;
- ``harestart_http_requests_total{method,route,code}`` (serve only): route is the path
  template (``/v1.0/{accountId}/ha/{haId}``), never the raw path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harestart.domain.group import Group
from harestart.domain.judge import judge_group
from harestart.domain.observation import GroupState
from harestart.domain.result import GroupStatus, RunResult, StepStatus
from harestart.engine.execute import Outcome
from harestart.engine.prepare import Refusal
from harestart.engine.run import Environment
from harestart.views.status import read_run_facts

__all__ = [
    "CONTENT_TYPE",
    "GroupSnapshot",
    "Metrics",
    "MetricsListener",
    "RunTextfile",
    "result_label",
    "snapshot_of",
]

# What generate_latest writes: the classic text format every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A restart of a 1+2 group takes a minute or two; a large source's shutdown can take much
# longer. Steps go from a second (stop MHA) to the minutes of a source restart.
RESTART_BUCKETS = (10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
STEP_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def result_label(result: RunResult) -> str:
    """ok | failed | interrupted (a refusal never produced a RunResult)."""
    if result.interrupted is not None or result.interruption is not None:
        return "interrupted"
    return "ok" if result.ok else "failed"


@dataclass(frozen=True)
class GroupSnapshot:
    """One group's gauges at one instant."""

    account: str
    group: str
    state: GroupStatus
    mha_running: bool
    lock_held: bool
    observation_age_s: float | None = None  # None: never observed (or not applicable)
    # (node, reason kind) of each pending restart the latest observation found (#23).
    pending: tuple[tuple[str, str], ...] = ()


def snapshot_of(
    account: str,
    group: str,
    state: GroupStatus,
    observed: GroupState | None,
    *,
    lock_held: bool,
    observation_age_s: float | None = None,
) -> GroupSnapshot:
    mha = observed.mha if observed is not None else None
    nodes = observed.nodes if observed is not None else ()
    pending = tuple(dict.fromkeys((n.name, r.kind.value) for n in nodes for r in n.pending_restart))
    return GroupSnapshot(
        account,
        group,
        state,
        mha is not None and mha.running(),
        lock_held,
        observation_age_s,
        pending,
    )


class _GroupCollector(Collector):
    """The per-group gauges, computed when scraped from ``snapshots()``."""

    def __init__(self, snapshots: Callable[[], Iterable[GroupSnapshot]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        labels = ["account", "group"]
        state = GaugeMetricFamily(
            "harestart_group_state",
            "1 for the group's current state (ACTIVE, REBOOT, ERROR), 0 for the others",
            labels=[*labels, "state"],
        )
        mha = GaugeMetricFamily(
            "harestart_mha_running",
            "1 when the group's MHA manager runs (masterha_check_status), else 0",
            labels=labels,
        )
        lock = GaugeMetricFamily(
            "harestart_lock_held",
            "1 while the group's run lock is held (a live run or a stale lock), else 0",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "harestart_observation_age_seconds",
            "Age of the latest observation of the group (absent until observed once)",
            labels=labels,
        )
        pending = GaugeMetricFamily(
            "harestart_node_pending_restart",
            "1 per kind of reason the node needs a restart for (absent: not pending)",
            labels=[*labels, "node", "reason"],
        )
        for s in self._snapshots():
            key = [s.account, s.group]
            for node, kind in s.pending:
                pending.add_metric([*key, node, kind], 1.0)
            for status in GroupStatus:
                state.add_metric([*key, status.value], 1.0 if s.state is status else 0.0)
            mha.add_metric(key, 1.0 if s.mha_running else 0.0)
            lock.add_metric(key, 1.0 if s.lock_held else 0.0)
            if s.observation_age_s is not None:
                age.add_metric(key, max(0.0, s.observation_age_s))
        yield from (state, mha, lock, age, pending)


class Metrics:
    """Every harestart metric in one registry of its own (never the process-wide default, so
    servers and tests can run side by side)."""

    def __init__(self, *, http: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "harestart_restarts",
            "Restarts by result: ok, failed, interrupted, refused (nothing was changed)",
            ["account", "group", "result"],
            registry=self.registry,
        )
        self.restart_duration = Histogram(
            "harestart_restart_duration_seconds",
            "Duration of whole restarts (every result but refused), all groups together",
            buckets=RESTART_BUCKETS,
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "harestart_step_duration_seconds",
            "Duration of restart steps by kind (stop_failover, restart_replica, ...)",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self._http: Counter | None = None
        if http:  # serve only: a CLI run answers no request
            self._http = Counter(
                "harestart_http_requests",
                "HTTP requests answered by harestart serve, by method, route template, code",
                ["method", "route", "code"],
                registry=self.registry,
            )

    # --- runs ---------------------------------------------------------------------------------

    def record_run(self, result: RunResult) -> None:
        """A restart that ran (ok, failed or interrupted): its counter and durations.

        Steps are counted when they ran in this attempt (a resume does not count again the
        steps an earlier attempt finished: they have no duration here)."""
        self.restarts.labels(result.account, result.group, result_label(result)).inc()
        self.restart_duration.observe(max(0.0, result.duration_s))
        for step in result.steps:
            if step.duration_s is None or step.status in (StepStatus.PENDING, StepStatus.SKIPPED):
                continue
            self.step_duration.labels(step.action.value).observe(max(0.0, step.duration_s))

    def record_refusal(self, account: str, group: str) -> None:
        """A restart refused before anything changed (locked, unfinished run, preflight)."""
        self.restarts.labels(account, group, "refused").inc()

    # --- groups -------------------------------------------------------------------------------

    def watch_groups(self, snapshots: Callable[[], Iterable[GroupSnapshot]]) -> None:
        """The per-group gauges, taken from ``snapshots()`` at every scrape."""
        self.registry.register(_GroupCollector(snapshots))

    # --- HTTP ---------------------------------------------------------------------------------

    def record_request(self, method: str, route: str, code: int) -> None:
        if self._http is None:
            return
        name = method if method in HTTP_METHODS else "OTHER"
        self._http.labels(name, route, str(code)).inc()

    # --- output -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def write_textfile(self, path: str) -> None:
        """For node_exporter's textfile collector: written to a temporary file in the same
        directory, then renamed over ``path`` (the collector never reads half a file)."""
        write_to_textfile(path, self.registry)


class MetricsListener:
    """``engine.execute``'s listener that counts each group's end into ``metrics``: a result
    (its counter and durations) or a refusal. The same for ``serve`` (``GET /metrics``) and
    ``run/resume --metrics-textfile``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def finished(self, result: RunResult) -> None:
        self.metrics.record_run(result)

    def refused(self, refusal: Refusal) -> None:
        self.metrics.record_refusal(refusal.group.account, refusal.group.id)


class RunTextfile:
    """``run/resume --metrics-textfile``: the run's metrics, counted by the same listener as
    ``serve``'s, written at the end for node_exporter's textfile collector."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metrics = Metrics()
        self.listener = MetricsListener(self.metrics)

    def write(self, env: Environment, groups: tuple[Group, ...], outcome: Outcome) -> str | None:
        """Write what was counted and each group's final state (its result's, else judged from
        its lock and journal), MHA and lock gauges; why it could not be written, else None."""
        results = {r.group: r for r in outcome.results}
        snapshots = []
        for g in groups:
            facts = read_run_facts(env, g)
            result = results.get(g.id)
            state = result.state if result is not None else judge_group(g, None, facts).state
            mha = result is not None and result.failover_enabled is True
            snapshots.append(GroupSnapshot(g.account, g.id, state, mha, facts.lock.held))
        self.metrics.watch_groups(lambda: snapshots)
        try:
            self.metrics.write_textfile(str(self.path))
        except OSError as exc:
            return f"cannot write the metrics textfile {self.path}: {exc}"
        return None
