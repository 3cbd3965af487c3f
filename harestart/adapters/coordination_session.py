"""One coordination session per bastion process and service (issue #24).

A *session* is one tooz coordinator (one connection, one member id, one membership lease)
shared by every group this process locks, publishes a holder for, or marks on that service,
and by its fleet board. One heartbeat thread and one watchdog keep it, whatever the number of
groups held:

- each heartbeat is one pass: tooz's ``coordinator.heartbeat()`` (the membership lease, which
  the holder records ride on), then the held locks are renewed together (``SessionLocks.renew``:
  on etcd one keep-alive of the one lease they all hang on, and one look at the keys on it; on
  the other drivers, where tooz gives each lock a lease or none, one renewal per lock and a look
  at each holder record, all in this one thread, once per interval);
- the watchdog judges the silence: a held lock whose last heartbeat that got through is so old
  that its lease may run out before the next one is lost.

A lost lock calls its group's ``on_lost`` (the run stops at its next safe point) and is
dropped from the session; the other groups stay held. When the session is lost as a whole
(the service gone for longer than the lease, the one lease expired), every held group's
``on_lost`` is called.

Sessions are shared through ``shared(key, make)``: the first user connects, the last one to
close it disconnects (in the background: tooz's stop waits for its own threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from harestart.domain.secret import scrub

log = structlog.get_logger("harestart.adapters.coordination")


class SessionLocks(Protocol):
    """How one driver keeps many locks on one session."""

    one_lease: bool  # every lock on one lease that a keep-alive renews (etcd)
    makes_groups: bool  # acquire(name, group) also creates the tooz group (etcd)

    def acquire(self, name: bytes, group: bytes | None = None) -> Any | None:
        """The lock, or None when another holds it; ``group``: a tooz group the driver may
        create in the same request (``makes_groups``), else the caller creates it."""

    def is_free(self, name: bytes) -> bool: ...

    def release(self, lock: Any) -> None: ...

    def renew(self, locks: list[Any]) -> dict[int, str]:
        """Renew ``locks`` together; ``{index: why it is lost}`` for those no longer ours."""
        ...

    def group_names(self, prefix: str) -> list[str]: ...

    def close(self) -> None: ...


class ToozLocks:
    """tooz's own locks (ZooKeeper, Redis, file): renewed one by one, in the one thread.

    ZooKeeper's locks are ephemeral nodes of the client's one session (kazoo keeps it alive);
    Redis gives each lock a key with its own expiry (tooz's ``heartbeat`` renews each, and so
    does ``lock.heartbeat``, which also says when another owns it now); the file driver's
    locks last as long as the process.
    """

    one_lease = False
    makes_groups = False

    def __init__(self, coordinator: Any) -> None:
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self._coord = coordinator

    def acquire(self, name: bytes, group: bytes | None = None) -> Any | None:
        lock = self._coord.get_lock(name)
        return lock if lock.acquire(blocking=False) else None

    def is_free(self, name: bytes) -> bool:
        lock = self._coord.get_lock(name)
        if not lock.acquire(blocking=False):
            return False
        lock.release()
        return True

    def release(self, lock: Any) -> None:
        lock.release()

    def renew(self, locks: list[Any]) -> dict[int, str]:
        lost = {}
        for i, lock in enumerate(locks):
            renew = getattr(lock, "heartbeat", None)  # tooz's file locks have no lease
            try:
                if renew is not None and not renew():
                    lost[i] = "the service no longer knows this run's lock"
            except (self._tooz.ToozConnectionError, self._tooz.OperationTimedOut):
                raise
            except self._tooz.ToozError as exc:  # e.g. Redis: another owns it now
                lost[i] = f"the lock could not be renewed: {scrub(str(exc))}"
        return lost

    def group_names(self, prefix: str) -> list[str]:
        names = (_text(g) for g in self._coord.get_groups().get())
        return [n for n in names if n.startswith(prefix)]

    def close(self) -> None:
        pass


def _text(name: object) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


@dataclass(eq=False)
class Hold:
    """One group's lock held in a session."""

    name: bytes
    holder_group: bytes
    lock: Any
    on_lost: Callable[[str], None]
    since: float  # when it was taken (a heartbeat before that does not count against it)
    lost: str | None = None


@dataclass(eq=False)
class Session:
    """A tooz coordinator shared by a process's groups, with one heartbeat and one watchdog."""

    key: str
    coord: Any
    locks: SessionLocks
    member: bytes
    shown: str
    lease: float
    interval: float
    clock: Callable[[], float] = time.monotonic
    users: int = 0
    passes: int = 0  # heartbeat passes that got through (the bench reports them)
    last_ok: float = 0.0
    last_error: str | None = None
    holds: list[Hold] = field(default_factory=list)
    _claimed: set[bytes] = field(default_factory=set)
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _renewing: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self.last_ok = self.clock()

    # --- the threads -----------------------------------------------------------------------

    def keep_alive(self) -> None:
        """Start the heartbeat and the watchdog (once); renew the session now when the last
        heartbeat is older than an interval (it may have been opened a while ago, e.g. before
        a long preflight: tooz makes a new membership lease when the old one lapsed, and so
        does the etcd lock lease, with no lock on it yet)."""
        with self._mutex:
            start = not self._threads and not self._stop.is_set()
            if start:
                self._threads = [
                    threading.Thread(target=self._run, name="coordination-heartbeat", daemon=True),
                    threading.Thread(target=self._watch, name="coordination-watchdog", daemon=True),
                ]
        with self._renewing:  # one renewal for the runs that arrive together
            if self.clock() - self.last_ok >= self.interval:
                self.beat()
        if start:
            for t in self._threads:
                t.start()

    def beat(self) -> None:
        """One heartbeat pass over the session and every lock it holds."""
        self.coord.heartbeat()
        with self._mutex:
            holds = list(self.holds)
        lost = self.locks.renew([h.lock for h in holds])
        if not self.locks.one_lease:
            for i, hold in enumerate(holds):
                if i not in lost and not self._member_of(hold.holder_group):
                    lost[i] = "this run's holder record expired (the lease ran out)"
        self.passes += 1
        self.last_ok = self.clock()
        for i, why in lost.items():
            self._lose(holds[i], f"{why} (coordination service {self.shown})")

    def _member_of(self, group: bytes) -> bool:
        try:
            members = self.coord.get_members(group).get()
        except self._tooz.GroupNotCreated:
            return False
        return self.member in {m if isinstance(m, bytes) else m.encode() for m in members}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # any failure to reach the service: the watchdog judges
                self.last_error = scrub(str(exc)) or type(exc).__name__
                log.warning(
                    "coordination.heartbeat_failed", service=self.shown, error=self.last_error
                )

    def _watch(self) -> None:
        """A hold is lost when no heartbeat got through since it was taken for so long that
        the lease may run out before the next one (a heartbeat that hangs is silence too)."""
        while not self._stop.wait(self.interval / 2):
            now = self.clock()
            with self._mutex:
                holds = list(self.holds)
            for hold in holds:
                silent = now - max(hold.since, self.last_ok)
                if silent + self.interval >= self.lease:
                    why = f": {self.last_error}" if self.last_error else ""
                    self._lose(
                        hold,
                        f"no heartbeat reached the coordination service {self.shown} for "
                        f"{silent:.0f} s (lease {self.lease:g} s){why}",
                    )

    def _lose(self, hold: Hold, reason: str) -> None:
        with self._mutex:
            if hold.lost is not None or hold not in self.holds:
                return
            hold.lost = reason
            self.holds.remove(hold)
            self._claimed.discard(hold.name)
        log.error("coordination.lease_lost", service=self.shown, reason=reason)
        hold.on_lost(reason)

    # --- the held locks --------------------------------------------------------------------

    def claim(self, name: bytes) -> bool:
        """Reserve a lock name in this process (False: a run here holds or takes it)."""
        with self._mutex:
            if name in self._claimed:
                return False
            self._claimed.add(name)
            return True

    def unclaim(self, name: bytes) -> None:
        with self._mutex:
            self._claimed.discard(name)

    def claimed(self, name: bytes) -> bool:
        with self._mutex:
            return name in self._claimed

    def hold(
        self, name: bytes, holder_group: bytes, lock: Any, on_lost: Callable[[str], None]
    ) -> Hold:
        hold = Hold(name, holder_group, lock, on_lost, self.clock())
        with self._mutex:
            self.holds.append(hold)
        return hold

    def drop(self, hold: Hold) -> None:
        """No more heartbeats for this hold (it is being released)."""
        with self._mutex:
            if hold in self.holds:
                self.holds.remove(hold)
            self._claimed.discard(hold.name)

    def threads(self) -> int:
        """How many threads keep this session (whatever the number of groups)."""
        return sum(t.is_alive() for t in self._threads)

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """One user less; the last one disconnects, in the background."""
        with _REGISTRY:
            self.users -= 1
            if self.users > 0:
                return
            if _SESSIONS.get(self.key) is self:
                del _SESSIONS[self.key]
        self._stop.set()
        threading.Thread(target=self._disconnect, name="coordination-stop", daemon=True).start()

    def _disconnect(self) -> None:
        try:
            self.locks.close()
            self.coord.stop()
        except Exception as exc:  # leaving: the service may be gone
            log.warning("coordination.stop_failed", service=self.shown, error=scrub(str(exc)))


_SESSIONS: dict[str, Session] = {}
_REGISTRY = threading.Lock()


def shared(key: str, make: Callable[[], Session]) -> Session:
    """The process's session for ``key`` (one per service URL), made by ``make`` the first
    time; each caller closes it once."""
    with _REGISTRY:
        session = _SESSIONS.get(key)
        if session is None:
            session = make()
            session.key = key
            _SESSIONS[key] = session
        session.users += 1
        return session


def sessions() -> list[Session]:
    """The sessions open in this process (the bench reports their heartbeats)."""
    with _REGISTRY:
        return list(_SESSIONS.values())
