"""etcd: every group lock of a bastion process on ONE etcd lease (issue #24).

tooz's etcd3gw driver gives each lock a lease of its own (``Etcd3Lock.acquire`` asks etcd for a
new lease, ``heartbeat`` refreshes them one request each): 500 held locks are 500 leases and 500
keep-alive requests per interval. Here the locks of a session are put on one lease, through
etcd3gw's own client (the one tooz's driver made: ``coordinator.client``), with the request
tooz's lock makes: a transaction that puts the key ``/tooz/locks<name>`` only if it does not
exist (``create_revision == 0``), with a random value. The key and the rule are tooz's, so a
lock taken here and one taken by tooz's own ``Etcd3Lock`` (another harestart) exclude each
other. One keep-alive renews them all; one ``timetolive`` request with ``keys`` lists the keys
still on the lease (a key deleted by hand, or a lease that expired, is a lock lost).

The unfinished marks and fleet marks are tooz groups (``adapters.coordination``); tooz lists
groups by reading every key under ``tooz/groups/``. ``group_names`` reads only the keys under
the prefix asked for: one small range request instead of the whole keyspace per call. The
client's calls go through ``etcd_http.PooledSession`` (urllib3, without requests' per-call
work).
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import uuid
from typing import Any

import requests
from etcd3gw import exceptions as etcd3gw_exc
from tooz import coordination as tooz_coordination

from harestart.adapters.etcd_http import PooledSession

LOCK_PREFIX = b"/tooz/locks"  # tooz's Etcd3Lock.LOCK_PREFIX
GROUP_PREFIX = "tooz/groups/"  # tooz's Etcd3Driver.GROUP_PREFIX
POOL_SIZE = 64  # HTTP connections kept to the service (requests' default: 10)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _translated(exc: Exception) -> Exception:
    """etcd3gw's errors as tooz's (what tooz's own driver raises for them)."""
    if isinstance(exc, etcd3gw_exc.ConnectionTimeoutError):
        return tooz_coordination.OperationTimedOut(str(exc))
    if isinstance(exc, etcd3gw_exc.ConnectionFailedError):
        return tooz_coordination.ToozConnectionError(str(exc))
    return tooz_coordination.ToozError(str(exc))


class EtcdLock:
    """One lock key on the session's lease; ``value`` tells it is ours."""

    def __init__(self, name: bytes) -> None:
        self.key = LOCK_PREFIX + name
        self.value = _b64(uuid.uuid4().bytes)


class EtcdLeaseLocks:
    """The locks of one session on one etcd lease of ``ttl`` seconds."""

    one_lease = True
    makes_groups = True

    def __init__(self, coordinator: Any, ttl: int) -> None:
        self.client = coordinator.client  # etcd3gw's client, made by tooz's driver
        self.ttl = ttl
        self._tune(self.client.session, self.client.base_url)
        self.client.session = PooledSession(self.client.session, self.client.base_url, POOL_SIZE)
        self._mutex = threading.Lock()
        self.lease = self._call(lambda: self.client.lease(ttl))

    @staticmethod
    def _tune(session: requests.Session, url: str) -> None:
        """A pool as large as the runs in parallel may use, and the environment's proxy
        settings read once (requests reads every environment variable on every request
        otherwise: a third of the CPU of a request)."""
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.proxies = dict(requests.utils.get_environ_proxies(url))
        if session.verify is True:  # no ca_cert option: the environment's bundle, if any
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
        session.trust_env = False

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except etcd3gw_exc.Etcd3Exception as exc:
            raise _translated(exc) from None

    def acquire(self, name: bytes, group: bytes | None = None) -> EtcdLock | None:
        """The lock, or None when another holds it (one transaction). ``group``: the tooz group
        made in the same transaction, as tooz's ``create_group`` makes it (its key, with the
        key as value; put again when it exists, which changes nothing tooz reads): the holder
        record's group, joined next, without a request of its own."""
        lock = EtcdLock(name)
        key = _b64(lock.key)
        ops = [{"request_put": {"key": key, "value": lock.value, "lease": self.lease.id}}]
        if group is not None:
            group_key = _b64(GROUP_PREFIX.encode() + group + b"/")
            ops.append({"request_put": {"key": group_key, "value": group_key}})
        txn = {
            "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": ops,
            "failure": [],
        }
        result = self._call(lambda: self.client.transaction(txn))
        return lock if result.get("succeeded") is True else None

    def is_free(self, name: bytes) -> bool:
        return not self._call(lambda: self.client.get((LOCK_PREFIX + name).decode()))

    def release(self, lock: EtcdLock) -> None:
        key = _b64(lock.key)
        txn = {
            "compare": [{"key": key, "result": "EQUAL", "target": "VALUE", "value": lock.value}],
            "success": [{"request_delete_range": {"key": key}}],
            "failure": [],
        }
        self._call(lambda: self.client.transaction(txn))

    def renew(self, locks: list[EtcdLock]) -> dict[int, str]:
        """One keep-alive of the lease, then (when locks are held) one look at the keys on
        it: ``{index in locks: why it is lost}``. A lease that expired is replaced (for the
        locks taken from now on) and every lock on it is lost."""
        ttl = self._call(self.lease.refresh)
        if ttl <= 0:
            with self._mutex:
                self.lease = self._call(lambda: self.client.lease(self.ttl))
            return dict.fromkeys(range(len(locks)), "the session's lease expired")
        if not locks:
            return {}
        on_lease = set(self._call(self.lease.keys))
        return {
            i: "its key is gone from the session's lease"
            for i, lock in enumerate(locks)
            if lock.key not in on_lease
        }

    def group_names(self, prefix: str) -> list[str]:
        """The tooz groups whose name starts with ``prefix`` (their members not listed)."""
        found = self._call(lambda: self.client.get_prefix(GROUP_PREFIX + prefix))
        names = []
        for _value, meta in found:
            key = meta["key"]
            text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            name = text[len(GROUP_PREFIX) :]
            if name.endswith("/") and "/" not in name[:-1]:
                names.append(name[:-1])
        return names

    def close(self) -> None:
        """Revoke the lease: every key still on it goes at once (best effort)."""
        with contextlib.suppress(etcd3gw_exc.Etcd3Exception, OSError):  # it expires anyway
            self.lease.revoke()
