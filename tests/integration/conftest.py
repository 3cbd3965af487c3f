"""Fixtures for integration tests: the lab flavours, cluster factories, log keeping.

Flavours: ``cluster_factory(..., flavor="mysql")`` starts an Oracle MySQL cluster (default
``"mariadb"``); a test that requests the ``flavor`` fixture runs once per flavour (ids
``mariadb``/``mysql``) and passes it on. The module-scoped ``cluster`` takes its flavour from
that fixture, so every test using ``cluster`` runs on both.

Importing .lab first sets the TESTCONTAINERS_* variables before testcontainers loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from . import coord, lab
from .coord import CoordService
from .lab import LabCluster


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Remember each phase's report on the item so fixtures know at teardown whether the test
    # failed (and keep the cluster logs then).
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        shared = funcargs.get("cluster")
        if isinstance(shared, LabCluster):
            shared.save_logs(_artifacts(item) / shared.name)
        for name in ("etcd", "redis_server"):
            service = funcargs.get(name)
            if isinstance(service, CoordService):
                service.save_logs(_artifacts(item) / service.name)


def _artifacts(item: pytest.Item) -> Path:
    return lab.ARTIFACTS_DIR / lab._safe_name(item.name)


def _failed(item: pytest.Item) -> bool:
    return any(
        getattr(item, f"rep_{when}", None) is not None and getattr(item, f"rep_{when}").failed
        for when in ("setup", "call")
    )


# The integration modules, longest first (measured: `pytest --durations`, two workers). `make
# test` runs the suite on two pytest-xdist workers, one module per worker at a time
# (--dist loadfile keeps a module's shared cluster in one process); handing out the longest
# modules first keeps the workers' ends close. Only the order depends on this list.
LONGEST_FIRST = (
    "test_faults.py",
    "test_switchover.py",
    "test_speed.py",
    "test_run.py",
    "test_no_lost_writes.py",
    "test_fleet.py",  # one 4-minute test: it ended the first two-worker run alone
    "test_coordination.py",
    "test_proxy.py",
    "test_api.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # schemathesis 4.32 gives each API operation's test the test function's node id (it sets
    # Function._nodeid); pytest-xdist schedules by node id and would run one operation only.
    for item in items:
        base, sep, _ = item.nodeid.partition("::")
        if sep and item.name.endswith("]") and not item.nodeid.endswith("]"):
            _set_node_id(item, f"{base}::{item.name}")
    ids = [item.nodeid for item in items]
    if len(set(ids)) != len(ids):  # a worker would silently run fewer tests than collected
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise pytest.UsageError(f"tests collected under the same node id: {twice}")

    def weight(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=weight)  # stable: a module's tests keep their order


def _set_node_id(item: pytest.Item, node_id: str) -> None:
    """pytest's private node id: structured (``_id``) since pytest 9, a string before."""
    if hasattr(item, "_id"):
        from _pytest.nodeid import coerce_node_id  # type: ignore[import-not-found,unused-ignore]

        item._id = coerce_node_id(node_id)
    else:
        setattr(item, "_nodeid", node_id)  # noqa: B010 - private, untyped


def pytest_sessionstart(session: pytest.Session) -> None:
    # Leftovers of pytest runs that died without cleaning up (their process is gone).
    lab.sweep(dead_only=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lab.sweep(session=lab.SESSION_ID)


@pytest.fixture(scope="session")
def lab_docker() -> None:
    """A Docker engine that answers; fails the run (never skips) when there is none. Images are
    built per flavour when a cluster of that flavour first starts (lab.ensure_lab_image)."""
    lab.ensure_docker()


@pytest.fixture(scope="module", params=lab.FLAVORS, ids=lab.FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
    """Each lab flavour in turn: a test (or fixture) requesting this runs once per flavour.

    Module scope, so the module-scoped ``cluster`` can use it and pytest runs a module's tests
    flavour by flavour (one shared cluster alive at a time)."""
    return str(request.param)


class ClusterFactory(Protocol):
    def __call__(
        self,
        replicas: int = 2,
        *,
        connect_retry: int | None = None,
        name: str | None = None,
        bastion: bool = False,
        flavor: str = lab.DEFAULT_FLAVOR,
    ) -> LabCluster: ...


@pytest.fixture
def cluster_factory(lab_docker: None, request: pytest.FixtureRequest) -> Iterator[ClusterFactory]:
    """Start clusters for one test; they are always removed afterwards, logs kept on failure."""
    started: list[LabCluster] = []
    artifacts = _artifacts(request.node)

    def factory(
        replicas: int = 2,
        *,
        connect_retry: int | None = None,
        name: str | None = None,
        bastion: bool = False,
        flavor: str = lab.DEFAULT_FLAVOR,
        **kw: Any,
    ) -> LabCluster:
        c = lab.start_cluster(
            replicas,
            connect_retry=connect_retry,
            name=name,
            artifacts=artifacts,
            bastion=bastion,
            flavor=flavor,
            **kw,
        )
        started.append(c)
        return c

    yield factory
    failed = _failed(request.node)
    for c in started:
        if failed:
            c.save_logs(artifacts / c.name)
        c.stop()


@pytest.fixture(scope="module")
def cluster(lab_docker: None, flavor: str, request: pytest.FixtureRequest) -> Iterator[LabCluster]:
    """A 1 source + 2 replicas + MHA cluster of each flavour in turn, shared by the tests of a
    module (read-mostly: tests that change it must put it back as they found it)."""
    artifacts = lab.ARTIFACTS_DIR / lab._safe_name(f"{request.node.name}-{flavor}")
    c = lab.start_cluster(2, artifacts=artifacts, flavor=flavor)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def etcd(lab_docker: None) -> Iterator[CoordService]:
    """One etcd 3.4 (Debian's etcd-server) for a module's tests, at ``etcd.url``
    (``etcd3+http://127.0.0.1:PORT``). Tests that stop it start it again, or use
    ``coord.start_etcd()`` for one of their own."""
    service = coord.start_etcd()
    try:
        yield service
    finally:
        service.remove()


@pytest.fixture(scope="module")
def redis_server(lab_docker: None) -> Iterator[CoordService]:
    """One Redis 7.0 (Debian's redis-server) for a module's tests, with a generated password
    (``redis_server.password``; never in ``redis_server.url``)."""
    service = coord.start_redis(lab._random_password())
    try:
        yield service
    finally:
        service.remove()
