"""Restarts started by the HTTP API: the same sequencer as ``harestart run``, in a thread.

``BackgroundRestarter.start`` runs ``engine.run.restart`` (lock, journal, executor) in a
background thread and waits until the run either holds the group's lock and began its first
step (the request is then answered 202) or was refused before that (another run holds the
group, an unfinished run, a stale lock: 422). So the lock alone decides between concurrent API
requests and ``harestart run`` in a shell.

``BackgroundRestarter.view`` reads the facts the judge needs without touching a host (the lock,
the journal, whether a restart of this server runs); the judge (``harestart.domain.judge``)
decides the state from them, as it does for ``harestart status``.
``CachedObserver`` observes a group read-only and keeps the answer a few seconds, so GET stays
fast while clients poll.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.plan import Step
from harestart.domain.result import RunResult, StepRecord, utc_now
from harestart.engine.interrupts import InterruptFlag
from harestart.engine.run import Environment, RunRequest
from harestart.engine.run import restart as engine_restart
from harestart.errors import HarestartError
from harestart.http.api import Observed, RunView, Unprocessable
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

    Runs go through ``engine.run.restart`` in ``env`` (default: the real hosts); ``restart``
    replaces that call in tests.
    """

    def __init__(
        self,
        inventory_path: str,
        *,
        env: Environment | None = None,
        restart: RestartFn | None = None,
    ) -> None:
        self.inventory_path = inventory_path
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
                raise Unprocessable("the server is shutting down")
            previous = self._jobs.get(key)
            if previous is not None and not previous.done.is_set():
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
                raise Unprocessable(str(job.error))
            raise RuntimeError(f"the restart failed to start: {job.error_id}")
        with self._lock:
            self._jobs[key] = job

    def view(self, group: Group) -> RunView:
        with self._lock:
            job = self._jobs.get((group.account, group.id))
        last = job.to_dict() if job is not None else None
        running = job is not None and not job.done.is_set()
        facts = read_run_facts(self.env, group, running_here=running)
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
        return engine_restart(
            group, request, env=self.env, reporter=reporter, interrupts=interrupts, resume=resume
        )

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
                job.error = exc
                log.warning("api.restart.refused", error=str(exc), error_type=type(exc).__name__)
            except Exception:
                job.error_id = "err-" + uuid.uuid4().hex[:12]
                log.exception("api.restart.error", error_id=job.error_id)
            finally:
                job.current_step = None
                job.done.set()


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
                return hit[2]
            observed = Observed(self._observe(group), utc_now())
            self._cache[key] = (self._clock(), context, observed)
            return observed
