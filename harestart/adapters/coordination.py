"""Shared locks through OpenStack tooz: etcd (etcd3gw), ZooKeeper (kazoo), Redis, tooz's file.

With ``adapters.coordination_session`` (one session per process and service: one coordinator,
one heartbeat thread, one watchdog) and ``adapters.coordination_etcd`` (etcd: every lock on the
session's one lease), the only modules that import tooz. ``ToozCoordination`` is the engine's
``Coordination`` for a group whose inventory sets ``defaults.coordination.url``: a view on the
process's session; every tooz or driver error becomes a harestart error here
(``CoordinationUnavailable``: exit 3 before anything changed; a lost lease mid-run goes to the
run's ``on_lost`` callback).

What is stored in the service, per group (``<a>``: account, ``<g>``: group id; ``~`` cannot
occur in either, so the names are unambiguous):

- the lock ``harestart~<a>~<g>~lock``: tooz's lock key (on etcd ``/tooz/locks<name>``, put on
  the session's one lease of ``lease`` seconds; on Redis a key with its own expiry; on
  ZooKeeper an ephemeral node of the session), renewed by the session's heartbeat every
  ``lease/3`` seconds while the run lives;
- the holder: a member of the tooz group ``harestart~<a>~<g>~holder`` whose capabilities are
  host, pid, user, since, command, state directory and run id (tooz locks do not say who holds
  them); members expire with the session's membership lease, so a dead holder disappears by
  itself;
- the unfinished mark: a tooz group ``harestart~<a>~<g>~unfinished~<base64url JSON>`` (host,
  state directory, run id, started at, user). A group has no lease: the mark outlives the
  holder, which is its point (another bastion must not start over a half-done restart). It
  only uses tooz's group API, so it works the same on every driver (etcd, Redis, ZooKeeper,
  file); on etcd the marks under a prefix are read with one range request.

Lease loss (``adapters.coordination_session``): the service answers that this run no longer
holds a lock (its key gone from the lease, the lease expired, the lock owned by another, the
holder record expired), or heartbeats have failed for so long that the lease may expire before
the next one (two in a row with ``lease/3``).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import structlog

from harestart.adapters.coordination_session import Hold, Session, SessionLocks, ToozLocks, shared
from harestart.adapters.protocols import FleetMark, HeldLock
from harestart.domain.coordination import SCHEMES, HolderInfo, UnfinishedMark
from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.judge import LockView
from harestart.domain.secret import Secret, scrub
from harestart.errors import CoordinationUnavailable, LockHeld

log = structlog.get_logger("harestart.adapters.coordination")

T = TypeVar("T")


def display_url(url: str) -> str:
    """The URL as messages show it: never a password (nor a query, which may hold options)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return url.split("://", 1)[0] + "://?"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def connect_url(settings: CoordinationSettings, group_id: str) -> str:
    """The URL tooz is given: the password (from ``password_env``) and the lease options.

    Raises CoordinationUnavailable (exit 3) for an unknown scheme, a missing driver library or
    an unset password variable; the message never holds the password.
    """
    shown = display_url(settings.url)
    scheme = settings.scheme
    if scheme not in SCHEMES:
        known = ", ".join(s for s in SCHEMES if s != "kazoo")
        raise CoordinationUnavailable(
            group_id, f"coordination service {shown}: unknown scheme {scheme!r} (known: {known})"
        )
    extra, module = SCHEMES[scheme]
    for needed in ("tooz", module):
        if needed is not None and importlib.util.find_spec(needed) is None:
            raise CoordinationUnavailable(
                group_id,
                f"coordination service {shown}: the Python package {needed} is not installed; "
                f"install it with `pip install harestart[{extra}]`",
            )
    parts = urlsplit(settings.url)
    netloc = parts.netloc
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if not value:
            raise CoordinationUnavailable(
                group_id,
                f"coordination service {shown}: the environment variable "
                f"{settings.password_env} (its password) is not set",
            )
        Secret(value)  # known to the scrubber from now on: never printed, never logged
        host = netloc.rsplit("@", 1)[-1]
        user = quote(parts.username or "", safe="")
        netloc = f"{user}:{quote(value, safe='')}@{host}"
    lease = max(1, math.ceil(settings.lease))
    if scheme == "file":
        # the file driver's members expire after ``timeout``; its group calls in the caller
        options = {"timeout": str(lease), "executor": "synchronous"}
    else:
        # timeout: each request to the service (short, so a heartbeat fails before the lease).
        request_timeout = str(max(1, min(10, lease // 3)))
        options = {
            "timeout": request_timeout,
            "lock_timeout": str(lease),
            "membership_timeout": str(lease),
        }
        if scheme not in {"zookeeper", "kazoo"}:
            # tooz's group calls in the calling thread, not queued to one worker thread per
            # coordinator: a session serves every group's run at once.
            options["executor"] = "synchronous"
        if scheme == "redis":
            options["socket_connect_timeout"] = request_timeout
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _text(name: object) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


class _Errors:
    """The one mapping of a coordination driver's errors: anything from tooz or the network
    means the service cannot be used (``CoordinationUnavailable``, exit 3), named for
    ``subject`` (a group, or a fleet) and the service's URL without its password."""

    def __init__(self, subject: str, shown: str) -> None:
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self.subject, self.shown = subject, shown

    def refused(self, exc: BaseException) -> NoReturn:
        reason = scrub(str(exc)) or type(exc).__name__
        raise CoordinationUnavailable(
            self.subject,
            f"coordination service {self.shown} refused the login (check password_env): {reason}",
        ) from None

    def down(self, exc: BaseException) -> NoReturn:
        reason = scrub(str(exc)) or type(exc).__name__
        raise CoordinationUnavailable(
            self.subject, f"coordination service {self.shown} does not answer: {reason}"
        ) from None

    def call(self, fn: Callable[[], T], *, ok: tuple[type[BaseException], ...] = ()) -> T:
        """``fn()``; the tooz errors in ``ok`` propagate, every other one means the service
        cannot be used."""
        try:
            return fn()
        except ok:
            raise
        except (self._tooz.ToozError, OSError) as exc:
            self.down(exc)


class ToozCoordination:
    """The ``Coordination`` of a shared service, for one group: a view on the process's one
    session with that service (``adapters.coordination_session``)."""

    def __init__(
        self,
        settings: CoordinationSettings,
        group_id: str,
        *,
        heartbeat_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        scope: str = "",
    ) -> None:
        import tooz
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self._tooz_root = tooz
        self.settings = settings
        self.backend = settings.scheme
        self.stale_locks = False  # the lease frees the lock of a run that died
        self.shown = display_url(settings.url)
        self.lease = float(settings.lease)
        self.interval = heartbeat_interval or self.lease / 3
        self.clock = clock
        self._group_id = group_id
        self._errors = _Errors(group_id, self.shown)
        self._session = open_session(
            settings, group_id, interval=self.interval, clock=clock, scope=scope
        )
        self._coord = self._session.coord
        self.member = self._session.member
        self._closed = False
        # The unfinished marks of the groups this view holds the lock of, once read: only the
        # lock's holder writes a group's marks, so what it read and wrote stays true until it
        # releases the lock (two requests to the service per run less).
        self._known_marks: dict[bytes, list[tuple[bytes, UnfinishedMark]] | None] = {}

    # --- errors ----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], *, ok: tuple[type[BaseException], ...] = ()) -> T:
        return self._errors.call(fn, ok=ok)

    # --- names -----------------------------------------------------------------------------

    @staticmethod
    def _base(group: Group) -> str:
        return f"harestart~{group.account}~{group.id}"

    def _lock_name(self, group: Group) -> bytes:
        return f"{self._base(group)}~lock".encode()

    def _holder_group(self, group: Group) -> bytes:
        return f"{self._base(group)}~holder".encode()

    def _mark_prefix(self, group: Group) -> str:
        return f"{self._base(group)}~unfinished~"

    # --- Coordination ----------------------------------------------------------------------

    def acquire(
        self,
        group: Group,
        holder: HolderInfo,
        *,
        break_stale: bool,
        on_lost: Callable[[str], None],
    ) -> HeldLock:
        # break_stale has nothing to do here: a dead holder's lease expires by itself.
        session = self._session
        name = self._lock_name(group)
        self._call(session.keep_alive)  # the membership fresh for the holder record
        if not session.claim(name):  # a run of this process holds it
            raise self._held(group)
        try:
            holders = self._holder_group(group)
            lock = self._call(lambda: session.locks.acquire(name, holders))
            if lock is None:
                raise self._held(group)
            try:
                self._join(group, holder, created=session.locks.makes_groups)
            except BaseException:
                self._release_quietly(lock)
                raise
        except BaseException:
            session.unclaim(name)
            raise
        hold = session.hold(name, self._holder_group(group), lock, on_lost)
        self._known_marks[name] = None
        log.debug("coordination.acquired", service=self.shown, member=self.member.decode())
        return _ToozHeld(self, group, hold, holder)

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        name = self._lock_name(group)
        session = self._session
        if session.claimed(name) or not self._call(lambda: session.locks.is_free(name)):
            raise self._held(group)

    def lock_view(self, group: Group) -> LockView:
        holder = self._holder(group)
        if holder is None:
            return LockView(backend=self.backend)
        return LockView(holder.describe(), True, self.backend, holder.since)

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        self.clear_unfinished(group)
        name = self.add_record(self._mark_prefix(group), mark.to_json())
        self._know(group, [(name, mark)])

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        marks = [m for _, m in self._marks(group)]
        return max(marks, key=lambda m: m.started_at) if marks else None

    def clear_unfinished(self, group: Group) -> None:
        for name, _ in self._marks(group):
            self.remove_record(name)
        self._know(group, [])

    def _know(self, group: Group, marks: list[tuple[bytes, UnfinishedMark]]) -> None:
        if self._lock_name(group) in self._known_marks:
            self._known_marks[self._lock_name(group)] = marks

    def forget(self, group: Group) -> None:
        """The lock is released: the marks may change from now on."""
        self._known_marks.pop(self._lock_name(group), None)

    # --- records: a tooz group named <prefix><base64url text>, no lease ---------------------

    def add_record(self, prefix: str, text: str) -> bytes:
        name = (prefix + _b64(text)).encode()
        with contextlib.suppress(self._tooz.GroupAlreadyExist):
            self._call(
                lambda: self._coord.create_group(name).get(), ok=(self._tooz.GroupAlreadyExist,)
            )
        return name

    def records(self, prefix: str) -> list[tuple[bytes, str]]:
        """(name, text) of every record under ``prefix``; one not base64url text is skipped."""
        out = []
        for name in self._call(lambda: self._session.locks.group_names(prefix)):
            with contextlib.suppress(ValueError):
                out.append((name.encode(), _unb64(name[len(prefix) :])))
        return out

    def remove_record(self, name: bytes) -> None:
        gone = (self._tooz.GroupNotCreated, self._tooz.GroupNotEmpty)
        with contextlib.suppress(*gone):
            self._call(lambda: self._coord.delete_group(name).get(), ok=gone)

    def close(self) -> None:
        """This group is done with the session; the last one out disconnects it (in the
        background: tooz's stop waits about a second for its worker threads, which a status
        or an API GET should not)."""
        if not self._closed:
            self._closed = True
            self._session.close()

    # --- helpers ---------------------------------------------------------------------------

    def _held(self, group: Group) -> LockHeld:
        # The holder publishes itself just after taking the lock: give it a moment.
        holder = self._holder(group)
        deadline = self.clock() + min(2.0, self.lease / 3)
        while holder is None and self.clock() < deadline:
            time.sleep(0.1)
            holder = self._holder(group)
        who = (
            holder.describe()
            if holder is not None
            else "a run whose holder record is not published (yet, or any more)"
        )
        return LockHeld(
            group.id,
            f"another harestart run holds group {group.id}: {who}; "
            f"lock in the coordination service {self.shown}",
        )

    def _join(self, group: Group, holder: HolderInfo, *, created: bool = False) -> None:
        """Join the holder record's group (``created``: the lock's request made it)."""
        name = self._holder_group(group)
        caps = holder.to_dict()
        if not created:
            with contextlib.suppress(self._tooz.GroupAlreadyExist):
                self._call(
                    lambda: self._coord.create_group(name).get(),
                    ok=(self._tooz.GroupAlreadyExist,),
                )
        try:
            self._call(
                lambda: self._coord.join_group(name, caps).get(),
                ok=(self._tooz.MemberAlreadyExist,),
            )
        except self._tooz.MemberAlreadyExist:
            self.publish(group, holder)

    def publish(self, group: Group, holder: HolderInfo) -> None:
        name = self._holder_group(group)
        caps = holder.to_dict()
        unsupported = self._tooz_root.NotImplemented
        try:
            self._call(lambda: self._coord.update_capabilities(name, caps).get(), ok=(unsupported,))
        except unsupported:  # tooz's file driver: join again with the new capabilities
            self._call(lambda: self._coord.leave_group(name).get())
            self._call(lambda: self._coord.join_group(name, caps).get())

    def leave(self, group: Group) -> None:
        name = self._holder_group(group)
        try:
            self._coord.leave_group(name).get()
        except (self._tooz.ToozError, OSError) as exc:
            log.warning("coordination.leave_failed", service=self.shown, error=scrub(str(exc)))

    def _release_quietly(self, lock: Any) -> None:
        try:
            self._session.locks.release(lock)
        except (self._tooz.ToozError, OSError) as exc:
            log.warning("coordination.release_failed", service=self.shown, error=scrub(str(exc)))

    def _holder(self, group: Group) -> HolderInfo | None:
        name = self._holder_group(group)
        try:
            members = self._call(
                lambda: self._coord.get_members_with_capabilities(name).get(),
                ok=(self._tooz.GroupNotCreated,),
            )
        except self._tooz.GroupNotCreated:
            return None
        holders = [h for h in map(HolderInfo.from_dict, members.values()) if h is not None]
        return max(holders, key=lambda h: h.since) if holders else None

    def _marks(self, group: Group) -> list[tuple[bytes, UnfinishedMark]]:
        name = self._lock_name(group)
        known = self._known_marks.get(name)
        if known is not None and self._session.claimed(name):  # held, not lost
            return list(known)
        found = (
            (n, UnfinishedMark.from_json(t)) for n, t in self.records(self._mark_prefix(group))
        )
        marks = [(name, mark) for name, mark in found if mark is not None]
        self._know(group, marks)
        return marks


class _ToozHeld:
    """A held shared lock: its place in the session's heartbeat, the holder, the release."""

    def __init__(
        self, owner: ToozCoordination, group: Group, hold: Hold, holder: HolderInfo
    ) -> None:
        self.owner = owner
        self.group = group
        self.hold = hold
        self.holder = holder

    @property
    def lost(self) -> str | None:
        return self.hold.lost

    def publish(self, run_id: str) -> None:
        if run_id == self.holder.run_id:
            return  # published with it when the lock was taken
        self.holder = replace(self.holder, run_id=run_id)
        self.owner.publish(self.group, self.holder)

    def release(self) -> None:
        """Out of the heartbeat; leave the holder group and release the lock, waiting a few
        seconds at most (a driver may retry an unreachable service for minutes; the lease
        then frees the lock by itself)."""
        owner = self.owner
        owner._session.drop(self.hold)
        owner.forget(self.group)

        def give_up() -> None:
            owner.leave(self.group)
            owner._release_quietly(self.hold.lock)

        done = threading.Thread(target=give_up, name=f"lease-release-{self.group.id}", daemon=True)
        done.start()
        done.join(timeout=max(5.0, owner.interval))
        if done.is_alive():
            log.warning("coordination.release_pending", service=owner.shown)


def open_session(
    settings: CoordinationSettings,
    subject: str,
    *,
    interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    scope: str = "",
) -> Session:
    """The process's session with the service ``settings`` names (connected the first time,
    refused with CoordinationUnavailable naming ``subject``); close it once when done.

    ``scope`` names the bastion when one process stands in for several (tests): each scope
    has sessions of its own. A bastion process leaves it empty."""
    url = connect_url(settings, subject)
    lease = float(settings.lease)
    every = interval or lease / 3
    key = f"{scope}#{url}#{every:g}"
    return shared(key, lambda: _connect(settings, url, subject, every, clock))


def _connect(
    settings: CoordinationSettings,
    url: str,
    subject: str,
    interval: float,
    clock: Callable[[], float],
) -> Session:
    from tooz import coordination as tooz_coordination

    errors = _Errors(subject, display_url(settings.url))
    _probe(settings, errors)
    if settings.scheme == "redis":
        _check_redis_login(url, errors)
    member = f"{os.uname().nodename}.{os.getpid()}.{uuid.uuid4().hex[:8]}".encode()
    lease = max(1, math.ceil(settings.lease))
    try:
        coord = tooz_coordination.get_coordinator(url, member)
        coord.start(start_heart=False)
        locks: SessionLocks
        if settings.scheme.startswith("etcd3"):
            from harestart.adapters.coordination_etcd import EtcdLeaseLocks

            locks = EtcdLeaseLocks(coord, lease)
        else:
            locks = ToozLocks(coord)
    except Exception as exc:  # any driver error at connect: exit 3
        errors.down(exc)
    return Session(
        key="",
        coord=coord,
        locks=locks,
        member=member,
        shown=errors.shown,
        lease=float(settings.lease),
        interval=interval,
        clock=clock,
    )


def _probe(settings: CoordinationSettings, errors: _Errors) -> None:
    """Refuse at once when nothing answers at the service's address (a driver may retry
    a refused connection for a minute before giving up)."""
    if settings.scheme == "file":
        return
    parts = urlsplit(settings.url)
    default = {"redis": 6379, "zookeeper": 2181, "kazoo": 2181}.get(settings.scheme, 2379)
    try:
        port = parts.port or default
        with socket.create_connection((parts.hostname or "localhost", port), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        errors.down(exc)


def _check_redis_login(url: str, errors: _Errors) -> None:
    """Refuse a wrong or missing Redis password at once: tooz's driver treats the refusal
    as a connection error and retries it 15 times (about a minute) before giving up."""
    import redis

    parts = urlsplit(url)
    client = redis.Redis.from_url(
        urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        errors.refused(exc)
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS")):
            errors.refused(exc)
    except redis.RedisError:
        pass  # not a login problem: the driver reports it with the others
    finally:
        client.close()


class ToozFleet:
    """The ``FleetBoard`` of ``harestart run --all`` on several bastions (see the README).

    Stored in the service (``<f>``: the fleet's name), through tooz's group API only:

    - members: the tooz group ``harestart~fleet~<f>~members``; each bastion joins it and
      tooz's heartbeat thread keeps its membership alive for ``lease`` seconds;
    - the round: the group ``harestart~fleet~<f>~round~<round id>``, created under the tooz
      lock ``harestart~fleet~<f>~round-lock`` so two bastions starting together share one;
    - the marks: ``harestart~fleet~<f>~<round id>~mark~<base64url JSON FleetMark>``, no lease.
    """

    def __init__(self, settings: CoordinationSettings, name: str, *, scope: str = "") -> None:
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self.name = name
        self.shown = display_url(settings.url)
        self._errors = _Errors(f"fleet {name}", self.shown)
        self.lease = float(settings.lease)
        # The process's session with the service: its member id is this bastion's, and its
        # heartbeat keeps the fleet membership alive with the groups' locks.
        self._session = open_session(settings, f"fleet {name}", scope=scope)
        self._coord = self._session.coord
        self.member = self._session.member.decode()
        self._joined = False
        self._closed = False

    def _call(self, fn: Callable[[], T], *, ok: tuple[type[BaseException], ...] = ()) -> T:
        return self._errors.call(fn, ok=ok)

    def _name(self, suffix: str) -> str:
        return f"harestart~fleet~{self.name}~{suffix}"

    def _create(self, name: str) -> None:
        exists = (self._tooz.GroupAlreadyExist,)
        with contextlib.suppress(*exists):
            self._call(lambda: self._coord.create_group(name.encode()).get(), ok=exists)

    def _delete(self, name: str) -> None:
        gone = (self._tooz.GroupNotCreated, self._tooz.GroupNotEmpty)
        with contextlib.suppress(*gone):
            self._call(lambda: self._coord.delete_group(name.encode()).get(), ok=gone)

    def _groups(self, prefix: str) -> list[str]:
        return sorted(self._call(lambda: self._session.locks.group_names(prefix)))

    def join(self, capabilities: dict[str, str]) -> None:
        name = self._name("members")
        self._call(self._session.keep_alive)  # the heartbeat keeps the membership
        self._create(name)
        with contextlib.suppress(self._tooz.MemberAlreadyExist):
            self._call(
                lambda: self._coord.join_group(name.encode(), capabilities).get(),
                ok=(self._tooz.MemberAlreadyExist,),
            )
        self._joined = True

    def members(self) -> set[str]:
        name = self._name("members").encode()
        try:
            found = self._call(
                lambda: self._coord.get_members(name).get(), ok=(self._tooz.GroupNotCreated,)
            )
        except self._tooz.GroupNotCreated:
            return set()
        return {_text(m) for m in found}

    def open_round(self, proposal: str) -> str:
        prefix = self._name("round~")
        lock = self._coord.get_lock(self._name("round-lock").encode())
        # tooz takes a number of seconds as a blocking timeout too
        wait: Any = self.lease
        if not self._call(lambda: bool(lock.acquire(blocking=wait))):
            raise CoordinationUnavailable(
                f"fleet {self.name}",
                f"coordination service {self.shown}: the fleet's round lock was not free "
                f"within {self.lease:g} s",
            )
        try:
            existing = self._groups(prefix)
            if existing:
                return existing[0][len(prefix) :]
            self._create(prefix + proposal)
            return proposal
        finally:
            with contextlib.suppress(self._tooz.ToozError, OSError):
                lock.release()

    def _mark_prefix(self, round_id: str) -> str:
        return self._name(f"{round_id}~mark~")

    def marks(self, round_id: str) -> dict[str, FleetMark]:
        prefix = self._mark_prefix(round_id)
        out: dict[str, FleetMark] = {}
        for name in self._groups(prefix):
            try:
                mark = FleetMark.from_dict(json.loads(_unb64(name[len(prefix) :])))
            except ValueError:
                mark = None
            if mark is not None and (mark.group not in out or mark.outcome == "done"):
                out[mark.group] = mark
        return out

    def mark(self, round_id: str, mark: FleetMark) -> None:
        self._create(self._mark_prefix(round_id) + _b64(json.dumps(mark.to_dict())))

    def leave(self) -> None:
        if not self._joined:
            return
        self._joined = False
        name = self._name("members").encode()
        try:
            self._coord.leave_group(name).get()
        except (self._tooz.ToozError, OSError) as exc:
            log.warning("fleet.leave_failed", service=self.shown, error=scrub(str(exc)))

    def end_round(self, round_id: str) -> None:
        for name in self._groups(self._mark_prefix(round_id)):
            self._delete(name)
        self._delete(self._name(f"round~{round_id}"))

    def close(self) -> None:
        self.leave()
        if not self._closed:
            self._closed = True
            self._session.close()


def tooz_fleet(settings: CoordinationSettings, name: str) -> ToozFleet:
    """The fleet board of ``run --all`` on the shared service ``settings`` names."""
    return ToozFleet(settings, name)
