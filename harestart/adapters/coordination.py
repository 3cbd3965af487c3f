"""Shared locks through OpenStack tooz: etcd (etcd3gw), ZooKeeper (kazoo), Redis, tooz's file.

The only module that imports tooz. ``ToozCoordination`` is the engine's ``Coordination`` for a
group whose inventory sets ``defaults.coordination.url``; every tooz or driver error becomes a
harestart error here (``CoordinationUnavailable``: exit 3 before anything changed; a lost
lease mid-run goes to the run's ``on_lost`` callback).

What is stored in the service, per group (``<a>``: account, ``<g>``: group id; ``~`` cannot
occur in either, so the names are unambiguous):

- the lock ``harestart~<a>~<g>~lock``: a tooz lock with a lease of ``lease`` seconds, renewed
  by a heartbeat thread every ``lease/3`` seconds while the run lives;
- the holder: a member of the tooz group ``harestart~<a>~<g>~holder`` whose capabilities are
  host, pid, user, since, command, state directory and run id (tooz locks do not say who holds
  them); members expire with the same lease, so a dead holder disappears by itself;
- the unfinished mark: a tooz group ``harestart~<a>~<g>~unfinished~<base64url JSON>`` (host,
  state directory, run id, started at, user). A group has no lease: the mark outlives the
  holder, which is its point (another bastion must not start over a half-done restart). It
  only uses tooz's group API, so it works the same on every driver (etcd, Redis, ZooKeeper,
  file), with no driver-specific client code.

Lease loss: a heartbeat renews the coordinator's membership and the lock, then checks that the
holder record is still there. The lease counts as lost when the service answers that this run
no longer holds it (lock not owned, holder record expired), or when heartbeats have failed for
so long that the lease may expire before the next one (two in a row with ``lease/3``).
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
        options = {"timeout": str(lease)}  # the file driver's members expire after it
    else:
        # timeout: each request to the service (short, so a heartbeat fails before the lease).
        request_timeout = str(max(1, min(10, lease // 3)))
        options = {
            "timeout": request_timeout,
            "lock_timeout": str(lease),
            "membership_timeout": str(lease),
        }
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
    """The ``Coordination`` of a shared service; one connection (tooz coordinator) each."""

    def __init__(
        self,
        settings: CoordinationSettings,
        group_id: str,
        *,
        heartbeat_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import tooz
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self._tooz_root = tooz
        self.settings = settings
        self.backend = settings.scheme
        self.shown = display_url(settings.url)
        self.lease = float(settings.lease)
        self.interval = heartbeat_interval or self.lease / 3
        self.clock = clock
        self._group_id = group_id
        self._errors = _Errors(group_id, self.shown)
        url = connect_url(settings, group_id)
        self._probe()
        if self.backend == "redis":
            self._check_redis_login(url)
        self.member = f"{os.uname().nodename}.{os.getpid()}.{uuid.uuid4().hex[:8]}".encode()
        try:
            self._coord = tooz_coordination.get_coordinator(url, self.member)
            self._coord.start(start_heart=False)
        except Exception as exc:  # any driver error at connect: exit 3
            self._down(exc)

    def _probe(self) -> None:
        """Refuse at once when nothing answers at the service's address (a driver may retry
        a refused connection for a minute before giving up)."""
        if self.backend == "file":
            return
        parts = urlsplit(self.settings.url)
        default = {"redis": 6379, "zookeeper": 2181, "kazoo": 2181}.get(self.backend, 2379)
        try:
            port = parts.port or default
            with socket.create_connection((parts.hostname or "localhost", port), timeout=5):
                pass
        except (OSError, ValueError) as exc:
            self._down(exc)

    def _check_redis_login(self, url: str) -> None:
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
            self._refused(exc)
        except redis.ResponseError as exc:
            if str(exc).startswith(("NOAUTH", "WRONGPASS")):
                self._refused(exc)
        except redis.RedisError:
            pass  # not a login problem: the driver reports it with the others
        finally:
            client.close()

    # --- errors ----------------------------------------------------------------------------

    def _refused(self, exc: BaseException) -> NoReturn:
        self._errors.refused(exc)

    def _down(self, exc: BaseException) -> NoReturn:
        self._errors.down(exc)

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
        # The backend may have been opened a while ago (``engine.prepare``, then a person's
        # confirmation): renew its membership lease (tooz makes a new one when it lapsed) so
        # that the holder record joins with a live one.
        self._call(self._coord.heartbeat)
        lock = self._coord.get_lock(self._lock_name(group))
        if not self._call(lambda: bool(lock.acquire(blocking=False))):
            raise self._held(group)
        try:
            self._join(group, holder)
        except BaseException:
            self._release_quietly(lock)
            raise
        held = _ToozHeld(self, group, lock, holder, on_lost)
        held.start()
        log.info("coordination.acquired", service=self.shown, member=self.member.decode())
        return held

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        lock = self._coord.get_lock(self._lock_name(group))
        if not self._call(lambda: bool(lock.acquire(blocking=False))):
            raise self._held(group)
        self._release_quietly(lock)

    def lock_view(self, group: Group) -> LockView:
        holder = self._holder(group)
        if holder is None:
            return LockView(backend=self.backend)
        return LockView(holder.describe(), True, self.backend, holder.since)

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        self.clear_unfinished(group)
        self.add_record(self._mark_prefix(group), mark.to_json())

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        marks = [m for _, m in self._marks(group)]
        return max(marks, key=lambda m: m.started_at) if marks else None

    def clear_unfinished(self, group: Group) -> None:
        for name, _ in self._marks(group):
            self.remove_record(name)

    # --- records: a tooz group named <prefix><base64url text>, no lease ---------------------

    def add_record(self, prefix: str, text: str) -> None:
        name = (prefix + _b64(text)).encode()
        with contextlib.suppress(self._tooz.GroupAlreadyExist):
            self._call(
                lambda: self._coord.create_group(name).get(), ok=(self._tooz.GroupAlreadyExist,)
            )

    def records(self, prefix: str) -> list[tuple[bytes, str]]:
        """(name, text) of every record under ``prefix``; one not base64url text is skipped."""
        out = []
        for raw in self._call(lambda: self._coord.get_groups().get()):
            name = _text(raw)
            if name.startswith(prefix):
                with contextlib.suppress(ValueError):
                    out.append((name.encode(), _unb64(name[len(prefix) :])))
        return out

    def remove_record(self, name: bytes) -> None:
        gone = (self._tooz.GroupNotCreated, self._tooz.GroupNotEmpty)
        with contextlib.suppress(*gone):
            self._call(lambda: self._coord.delete_group(name).get(), ok=gone)

    def close(self) -> None:
        """Disconnect in the background: tooz's stop waits about a second for its worker
        threads, which a status or an API GET should not (the locks were released already)."""
        threading.Thread(target=self._stop, name="coordination-stop", daemon=True).start()

    def _stop(self) -> None:
        try:
            self._coord.stop()
        except Exception as exc:  # leaving: the service may be gone
            log.warning("coordination.stop_failed", service=self.shown, error=scrub(str(exc)))

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

    def _join(self, group: Group, holder: HolderInfo) -> None:
        name = self._holder_group(group)
        caps = holder.to_dict()
        with contextlib.suppress(self._tooz.GroupAlreadyExist):
            self._call(
                lambda: self._coord.create_group(name).get(), ok=(self._tooz.GroupAlreadyExist,)
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
            lock.release()
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
        found = (
            (n, UnfinishedMark.from_json(t)) for n, t in self.records(self._mark_prefix(group))
        )
        return [(name, mark) for name, mark in found if mark is not None]

    def beat(self, group: Group, lock: Any) -> None:
        """One heartbeat; raises _Lost when the service says the lock is no longer ours, a
        ToozError/OSError when it could not be asked."""
        self._coord.heartbeat()
        renew = getattr(lock, "heartbeat", None)  # tooz's file locks have no lease to renew
        try:
            if renew is not None and not renew():
                raise _Lost("the service no longer knows this run's lock")
        except (self._tooz.ToozConnectionError, self._tooz.OperationTimedOut):
            raise
        except self._tooz.ToozError as exc:  # e.g. Redis: the lock is owned by another now
            raise _Lost(f"the lock could not be renewed: {scrub(str(exc))}") from None
        try:
            members = self._coord.get_members(self._holder_group(group)).get()
        except self._tooz.GroupNotCreated:
            members = set()
        if self.member not in {m if isinstance(m, bytes) else m.encode() for m in members}:
            raise _Lost("this run's holder record expired (the lease ran out)")


class _Lost(Exception):
    """The service says this run no longer holds its lock."""


class _ToozHeld:
    """A held shared lock: the heartbeat thread, the published holder, the release."""

    def __init__(
        self,
        owner: ToozCoordination,
        group: Group,
        lock: Any,
        holder: HolderInfo,
        on_lost: Callable[[str], None],
    ) -> None:
        self.owner = owner
        self.group = group
        self.lock = lock
        self.holder = holder
        self.on_lost = on_lost
        self.lost: str | None = None
        self.last_ok = owner.clock()  # the last heartbeat that got through (acquire counts)
        self.last_error: str | None = None
        self._lost_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{group.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, run_id: str) -> None:
        self.holder = replace(self.holder, run_id=run_id)
        self.owner.publish(self.group, self.holder)

    def release(self) -> None:
        """Stop heartbeating, leave the holder group, release the lock: waiting a few
        seconds at most (a driver may retry an unreachable service for minutes; the lease
        then frees the lock by itself)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.owner.interval + 5)

        def give_up() -> None:
            self.owner.leave(self.group)
            self.owner._release_quietly(self.lock)

        done = threading.Thread(target=give_up, name=f"lease-release-{self.group.id}", daemon=True)
        done.start()
        done.join(timeout=max(5.0, self.owner.interval))
        if done.is_alive():
            log.warning("coordination.release_pending", service=self.owner.shown)

    def _lose(self, reason: str) -> None:
        with self._lost_lock:
            if self.lost is not None or self._stop.is_set():
                return
            self.lost = reason
        self._stop.set()  # no more heartbeats: the lock is not this run's any more
        log.error("coordination.lease_lost", service=self.owner.shown, reason=reason)
        self.on_lost(reason)

    def _run(self) -> None:
        """Heartbeats every ``interval``; the watchdog judges their silence."""
        owner = self.owner
        watchdog = threading.Thread(
            target=self._watch, name=f"lease-watchdog-{self.group.id}", daemon=True
        )
        watchdog.start()
        while not self._stop.wait(owner.interval):
            try:
                owner.beat(self.group, self.lock)
            except _Lost as exc:
                self._lose(f"{exc} (coordination service {owner.shown})")
                return
            except Exception as exc:  # any failure to reach the service
                self.last_error = scrub(str(exc)) or type(exc).__name__
                log.warning(
                    "coordination.heartbeat_failed", service=owner.shown, error=self.last_error
                )
                continue
            self.last_ok = owner.clock()

    def _watch(self) -> None:
        """The lease is lost when no heartbeat got through for so long that the lease may run
        out before the next one (a heartbeat that hangs counts as silence too)."""
        owner = self.owner
        while not self._stop.wait(owner.interval / 2):
            silent = owner.clock() - self.last_ok
            if silent + owner.interval >= owner.lease:
                why = f": {self.last_error}" if self.last_error else ""
                self._lose(
                    f"no heartbeat reached the coordination service {owner.shown} for "
                    f"{silent:.0f} s (lease {owner.lease:g} s){why}"
                )
                return


class ToozFleet:
    """The ``FleetBoard`` of ``harestart run --all`` on several bastions (see the README).

    Stored in the service (``<f>``: the fleet's name), through tooz's group API only:

    - members: the tooz group ``harestart~fleet~<f>~members``; each bastion joins it and
      tooz's heartbeat thread keeps its membership alive for ``lease`` seconds;
    - the round: the group ``harestart~fleet~<f>~round~<round id>``, created under the tooz
      lock ``harestart~fleet~<f>~round-lock`` so two bastions starting together share one;
    - the marks: ``harestart~fleet~<f>~<round id>~mark~<base64url JSON FleetMark>``, no lease.
    """

    def __init__(self, settings: CoordinationSettings, name: str) -> None:
        from tooz import coordination as tooz_coordination

        self._tooz = tooz_coordination
        self.name = name
        self.shown = display_url(settings.url)
        self._errors = _Errors(f"fleet {name}", self.shown)
        self.lease = float(settings.lease)
        url = connect_url(settings, f"fleet {name}")
        self.member = f"{os.uname().nodename}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._joined = False
        try:
            self._coord = tooz_coordination.get_coordinator(url, self.member.encode())
            self._coord.start(start_heart=True)
        except Exception as exc:
            self._down(exc)

    def _down(self, exc: BaseException) -> NoReturn:
        self._errors.down(exc)

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
        names = [_text(g) for g in self._call(lambda: self._coord.get_groups().get())]
        return sorted(n for n in names if n.startswith(prefix))

    def join(self, capabilities: dict[str, str]) -> None:
        name = self._name("members")
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
        try:
            self._coord.stop()
        except Exception as exc:  # leaving: the service may be gone
            log.warning("fleet.stop_failed", service=self.shown, error=scrub(str(exc)))


def tooz_fleet(settings: CoordinationSettings, name: str) -> ToozFleet:
    """The fleet board of ``run --all`` on the shared service ``settings`` names."""
    return ToozFleet(settings, name)
