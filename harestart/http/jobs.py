"""Restarts started by the HTTP API: the same way in as ``harestart run``, in a thread.

``BackgroundRestarter.start`` runs ``engine.prepare`` then ``engine.execute`` (the checks in
the judge's order, then the lock, journal and executor) in a background thread and waits until
the run either holds the group's lock and began its first step (the request is then answered
202) or was refused before that (another run holds the group, an unfinished run, a stale lock,
the group not healthy: 422, with the same message as ``harestart run``). So the lock alone
decides between concurrent API requests and ``harestart run`` in a shell.

``BackgroundRestarter.view`` reads the facts the judge needs without touching a host (the lock,
the journal, whether a restart of this server runs); the judge (``harestart.domain.judge``)
decides the state from them, as it does for ``harestart status``.
``BackgroundObserver`` (what ``serve`` uses) re-observes every group in background threads
every few seconds and hands GET the latest observation at once: no request waits on SSH or
MySQL, a dead host makes the data old (``observed_at``), never the answer slow.
``CachedObserver`` observes on the request's thread and keeps the answer a few seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Step
from harestart.domain.result import RunResult, StepRecord, utc_now
from harestart.engine.execute import Listener, execute
from harestart.engine.prepare import Refusal, prepare
from harestart.engine.run import Environment, RunRequest
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.errors import (
    CoordinationUnavailable,
    HarestartError,
    Interrupted,
    LockHeld,
    PreflightRefused,
)
from harestart.http.api import Observed, RunView, Unprocessable
from harestart.views.metrics import Metrics, MetricsListener
from harestart.views.status import read_run_facts
from harestart.wiring import environment, observe_groups

log = structlog.get_logger("harestart.http.jobs")

# How long a POST waits for its run to take the lock and begin (it takes milliseconds).
START_TIMEOUT = 30.0


@dataclass
class Job:
    """One restart started through the API."""

    group: Group
    request_id: str
    accepted_at: str = field(default_factory=utc_now)
    flag: InterruptFlag = field(default_factory=InterruptFlag)
    began: threading.Event = field(default_factory=threading.Event)  # first step started
    done: threading.Event = field(default_factory=threading.Event)
    current_step: str | None = None
    progress: str | None = None
    result: RunResult | None = None
    error: HarestartError | None = None
    error_id: str | None = None  # an unexpected exception, logged under this id
    thread: threading.Thread | None = None

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.error_id is not None:
            error = {"name": "InternalError", "message": f"unexpected error {self.error_id}"}
        elif self.error is not None:
            error = {"name": type(self.error).__name__, "message": str(self.error)}
        return {
            "request_id": self.request_id,
            "accepted_at": self.accepted_at,
            "running": not self.done.is_set(),
            "ok": None if not self.done.is_set() else (self.result is not None and self.result.ok),
            "current_step": self.current_step,
            "progress": self.progress,
            "result": None if self.result is None else self.result.to_dict(),
            "error": error,
        }


class _JobReporter:
    """The executor's Reporter for an API run: remembers the running step for GET."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def step_started(self, group: str, step: Step) -> None:
        self.job.current_step = step.key
        self.job.progress = None
        self.job.began.set()

    def step_finished(self, group: str, record: StepRecord) -> None:
        self.job.current_step = None

    def progress(self, group: str, host: str | None, text: str) -> None:
        self.job.progress = f"{host}: {text}" if host else text


# (group, reporter, request, *, resume, interrupts) -> RunResult; a test seam.
RestartFn = Callable[..., RunResult]


class BackgroundRestarter:
    """The API's ``Restarter``: one background run per group, the group lock decides.

    Runs go through ``engine.prepare`` and ``engine.execute`` in ``env`` (default: the real
    hosts), told to ``metrics`` by the same listener as ``--metrics-textfile``; ``restart``
    replaces both calls in tests.
    """

    def __init__(
        self,
        inventory_path: str,
        *,
        env: Environment | None = None,
        restart: RestartFn | None = None,
        metrics: Metrics | None = None,
        on_finished: Callable[[Group], None] | None = None,
    ) -> None:
        self.inventory_path = inventory_path
        self.metrics = metrics
        self._listeners: list[Listener] = [MetricsListener(metrics)] if metrics else []
        self.on_finished = on_finished
        self.env = env if env is not None else environment()
        self._restart = restart if restart is not None else self._restart_in_env
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], Job] = {}  # the latest accepted job per group
        self._threads: list[Job] = []  # every job started, accepted or not (for shutdown)
        self._closed = False

    # --- Restarter -------------------------------------------------------------------------

    def start(self, group: Group, request_id: str) -> None:
        key = (group.account, group.id)
        with self._lock:
            if self._closed:
                self._refused(group)
                raise Unprocessable("the server is shutting down")
            previous = self._jobs.get(key)
            if previous is not None and not previous.done.is_set():
                self._refused(group)
                raise Unprocessable(
                    f"HA instance {group.id} is REBOOT: the restart requested by "
                    f"{previous.request_id} at {previous.accepted_at} is running"
                )
            job = Job(group, request_id)
            job.thread = threading.Thread(
                target=self._run, args=(job,), name=f"restart-{group.id}", daemon=True
            )
            self._threads = [j for j in self._threads if not j.done.is_set()] + [job]
            job.thread.start()
        # Wait until the run holds the lock and began, or was refused before that.
        deadline = time.monotonic() + START_TIMEOUT
        while not (job.began.is_set() or job.done.is_set()) and time.monotonic() < deadline:
            job.began.wait(0.05)
        if job.done.is_set() and not job.began.is_set():
            # Refused before its first step: the lock is held (LockHeld), an unfinished or
            # unreadable journal (UsageError, JournalError).
            if job.error is not None:
                raise Unprocessable(str(job.error), tenant=refusal_for_tenant(job))
            raise RuntimeError(f"the restart failed to start: {job.error_id}")
        with self._lock:
            self._jobs[key] = job

    def _refused(self, group: Group) -> None:
        if self.metrics is not None:
            self.metrics.record_refusal(group.account, group.id)

    def view(self, group: Group) -> RunView:
        with self._lock:
            job = self._jobs.get((group.account, group.id))
        last = job.to_dict() if job is not None else None
        running = job is not None and not job.done.is_set()
        facts = read_run_facts(self.env, group, running_here=running, inventory=self.inventory_path)
        current = job.current_step if job is not None and running else None
        return RunView(facts, current, last, self.inventory_path)

    # --- shutdown --------------------------------------------------------------------------

    def stop_all(self, signal_name: str) -> int:
        """Ask every running restart to stop at its next safe point; refuse new ones."""
        with self._lock:
            self._closed = True
            running = [j for j in self._threads if not j.done.is_set()]
        for job in running:
            job.flag.request(signal_name)
            log.warning("api.restart.stopping", group=job.group.id, request_id=job.request_id)
        return len(running)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every running restart to end; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            jobs = list(self._threads)
        for job in jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.done.wait(left):
                return False
        return True

    # --- the background thread -------------------------------------------------------------

    def _restart_in_env(
        self,
        group: Group,
        reporter: _JobReporter,
        request: RunRequest,
        *,
        resume: bool,
        interrupts: InterruptFlag,
    ) -> RunResult:
        """``harestart run``'s way: prepare, then execute; a refusal is raised."""
        try:
            prepared = prepare((group,), request, self.env, resume=resume)
        except HarestartError as exc:  # what the run needs is missing (the door checked most)
            for x in self._listeners:
                x.refused(Refusal(group, exc))
            raise
        outcome = execute(prepared, self._listeners, reporter=reporter, interrupts=interrupts)
        if outcome.refusals:
            raise outcome.refusals[0].error
        if not outcome.results:  # stopped (serve is shutting down) before it began
            raise Interrupted(interrupts.requested or "SIGTERM")
        return outcome.results[0]

    def _run(self, job: Job) -> None:
        g = job.group
        request = RunRequest(inventory=self.inventory_path, command="harestart serve")
        with structlog.contextvars.bound_contextvars(group=g.id, request_id=job.request_id):
            log.info("api.restart.accepted", account=g.account)
            try:
                job.result = self._restart(
                    g, _JobReporter(job), request, resume=False, interrupts=job.flag
                )
                log.info(
                    "api.restart.finished",
                    state=job.result.state.value,
                    ok=job.result.ok,
                    interrupted=job.result.interrupted,
                    duration_s=round(job.result.duration_s, 3),
                )
            except HarestartError as exc:
                # Refused before anything changed (lock, journal, health; counted by the
                # metrics listener).
                job.error = exc
                log.warning("api.restart.refused", error=str(exc), error_type=type(exc).__name__)
            except Exception:
                job.error_id = "err-" + uuid.uuid4().hex[:12]
                if self.metrics is not None:
                    self.metrics.restarts.labels(g.account, g.id, "failed").inc()
                log.exception("api.restart.error", error_id=job.error_id)
            finally:
                job.current_step = None
                self._finished(g)
                job.done.set()

    def _finished(self, group: Group) -> None:
        """``on_finished`` (serve: observe the group again) before the job is reported done,
        so no GET judges the group ACTIVE on an observation taken during the run."""
        if self.on_finished is None:
            return
        try:
            self.on_finished(group)
        except Exception:
            log.exception("api.restart.on_finished_failed")


class CachedObserver:
    """Observes a group read-only (SSH, MySQL, MHA status) at most once per ``ttl`` seconds."""

    def __init__(
        self,
        ttl: float = 5.0,
        *,
        observe: Callable[[Group], GroupState] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._observe = observe or (lambda g: observe_groups((g,))[0][1])
        self._clock = clock
        self._lock = threading.Lock()
        self._group_locks: dict[tuple[str, str], threading.Lock] = {}
        self._cache: dict[tuple[str, str], tuple[float, object, Observed]] = {}

    def observe(self, group: Group, *, context: object = None) -> Observed:
        """Reuse an observation younger than ``ttl`` taken in the same ``context`` (the group's
        state and current step): a step or state change always observes afresh."""
        key = (group.account, group.id)
        with self._lock:
            group_lock = self._group_locks.setdefault(key, threading.Lock())
        with group_lock:  # one observation per group at a time; others wait for its answer
            hit = self._cache.get(key)
            if hit is not None and self._clock() - hit[0] < self.ttl and hit[1] == context:
                return Observed(hit[2].state, hit[2].observed_at, self._clock() - hit[0])
            observed = Observed(self._observe(group), utc_now(), 0.0)
            self._cache[key] = (self._clock(), context, observed)
            return observed


@dataclass
class _Slot:
    """One group's observations in the background observer."""

    observed: Observed | None = None
    taken: float = 0.0  # clock() when the latest observation began
    context: object = None  # the group's run state and step when it began
    due: float = 0.0  # clock() when the next observation is due
    running_since: float | None = None
    timed_out: bool = False


class BackgroundObserver:
    """Re-observes every group of ``groups()`` every ``interval`` seconds in background
    threads; ``observe`` only reads what was last found, so it never waits on a host.

    At most one observation per group runs at a time and at most ``parallel`` at once; one
    running longer than ``timeout`` (a host that accepts connections and never answers) is
    logged and no longer counted against ``parallel``: the group's data just grows old until
    it returns (the adapters' own timeouts end it). ``context_of(group)`` is the group's run
    state and step (what the API judges next to the observation): when a GET asks in another
    context than the latest observation's (a run has ended since, or moved to another step),
    the group is observed again at once; the answer meanwhile is the latest observation (its
    ``observed_at`` says how old). ``refresh`` observes on the caller's thread: a restart of
    this server does, before it is reported finished, so the first answer after a restart
    shows the group as the restart left it.
    """

    def __init__(
        self,
        groups: Callable[[], Sequence[Group]],
        *,
        interval: float = 10.0,
        timeout: float = 60.0,
        parallel: int = 8,
        observe: Callable[[Group], GroupState] | None = None,
        context_of: Callable[[Group], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.parallel = parallel
        self._groups = groups
        # Each node's pending restarts too (#23): GET /ha/{id} and the metrics show them.
        self._observe = observe or (lambda g: observe_groups((g,), detect_pending=True)[0][1])
        self._context_of = context_of
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- Observer ------------------------------------------------------------------------------

    def observe(self, group: Group, *, context: object = None) -> Observed | None:
        """The latest observation of ``group`` with its age (None: not observed yet); asked in
        another ``context`` than it was taken in, the group is observed again at once."""
        with self._lock:
            slot = self._slots.setdefault((group.account, group.id), _Slot())
            if self._context_of is not None and context is not None and slot.context != context:
                slot.context = context  # nudge once per change, not at every GET
                slot.due = 0.0
                self._wake.set()
            if slot.observed is None:
                return None
            return Observed(slot.observed.state, slot.observed.observed_at, self._age(slot))

    def latest(self, group: Group) -> Observed | None:
        """The latest observation whatever its context (metrics)."""
        with self._lock:
            slot = self._slots.get((group.account, group.id))
            if slot is None or slot.observed is None:
                return None
            return Observed(slot.observed.state, slot.observed.observed_at, self._age(slot))

    def refresh(self, group: Group) -> None:
        """Observe ``group`` now, on this thread (not a request's: a restart's)."""
        with self._lock:
            slot = self._slots.setdefault((group.account, group.id), _Slot())
        self._observe_one(group, slot)

    def observed_all(self) -> bool:
        """Has every group been observed (or tried) once? (serve waits for it at startup)"""
        try:
            groups = list(self._groups())
        except HarestartError:
            return True
        with self._lock:
            return all(
                (s := self._slots.get((g.account, g.id))) is not None
                and (s.observed is not None or s.timed_out)
                for g in groups
            )

    def nudge(self, group: Group) -> None:
        """Observe ``group`` again as soon as possible (e.g. its restart ended)."""
        with self._lock:
            self._slots.setdefault((group.account, group.id), _Slot()).due = 0.0
        self._wake.set()

    def _age(self, slot: _Slot) -> float:
        return max(0.0, self._clock() - slot.taken)

    # --- the loop ------------------------------------------------------------------------------

    def start(self) -> BackgroundObserver:
        self._thread = threading.Thread(target=self._loop, name="observer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop launching observations; running ones are abandoned (daemon threads)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the observer must outlive a bad inventory or a bug
                log.exception("api.observer.error")
            self._wake.wait(min(1.0, self.interval))
            self._wake.clear()

    def poll_once(self) -> int:
        """Launch every observation that is due (within ``parallel``); returns how many."""
        try:
            groups = list(self._groups())
        except HarestartError as exc:  # the inventory cannot be loaded: nothing to observe
            log.debug("api.observer.no_inventory", error=str(exc))
            return 0
        now = self._clock()
        launch: list[tuple[Group, _Slot]] = []
        with self._lock:
            keys = {(g.account, g.id) for g in groups}
            for key in [k for k in self._slots if k not in keys]:
                del self._slots[key]  # the group left the inventory
            busy = 0
            for key, slot in self._slots.items():
                if slot.running_since is None or slot.timed_out:
                    continue
                if now - slot.running_since > self.timeout:
                    slot.timed_out = True
                    log.warning("api.observer.timeout", group=key[1], timeout_s=self.timeout)
                else:
                    busy += 1
            for g in groups:
                slot = self._slots.setdefault((g.account, g.id), _Slot())
                if slot.running_since is None and now >= slot.due and busy < self.parallel:
                    slot.running_since, slot.timed_out = now, False
                    slot.due = now + self.interval
                    busy += 1
                    launch.append((g, slot))
        for g, slot in launch:
            threading.Thread(
                target=self._observe_one, args=(g, slot), name=f"observe-{g.id}", daemon=True
            ).start()
        return len(launch)

    def _observe_one(self, group: Group, slot: _Slot) -> None:
        began, at = self._clock(), utc_now()
        try:
            context = self._context_of(group) if self._context_of is not None else None
            state = self._observe(group)
        except Exception:
            log.exception("api.observer.failed", group=group.id)
            with self._lock:
                slot.running_since = None
            return
        with self._lock:
            if slot.observed is None or began >= slot.taken:  # never replace a newer one
                slot.observed, slot.taken, slot.context = Observed(state, at), began, context
            slot.running_since = None


def refusal_for_tenant(job: Job) -> str:
    """Why a restart was refused before it began, as a tenant may read it: what stands in the
    way, not the lock holder's pid, user and host nor the server's paths (serve's log has the
    whole message under the request id)."""
    gid = job.group.id
    if isinstance(job.error, LockHeld):
        if "stale lock" in str(job.error):
            return f"group {gid} has a stale lock of a run that died: an operator must look"
        return f"another harestart run holds group {gid}; retry once it has finished"
    if "unfinished run" in str(job.error):
        return f"group {gid} has an unfinished run (ERROR): an operator resumes it"
    if isinstance(job.error, PreflightRefused) and not isinstance(
        job.error, CoordinationUnavailable
    ):
        return f"group {gid} is not healthy (ERROR): its problems are listed in GET .../ha/{gid}"
    return (
        f"the restart of group {gid} was refused before it began; an operator can read why in "
        f"serve's log under request {job.request_id}"
    )
