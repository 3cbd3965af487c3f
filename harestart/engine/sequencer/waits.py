"""The run's waits: ``poll_until`` with progress, interrupts and failed gates.

Each wait polls one question until the answer holds. A check that sees the condition can no
longer come (a failed replication SQL thread, MHA failing over) raises ``StopWaiting``: the
wait ends at once as a failed gate with that reason, not at its deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from harestart.domain.topology import MhaState, MhaStatus, ReplicaStatus
from harestart.engine.sequencer.scope import RunScope
from harestart.engine.sequencer.waiting import StopWaiting, poll_until
from harestart.errors import GateFailed, WaitTimeout

T = TypeVar("T")

# Uptime has one-second resolution; below this many seconds a restart cannot be told apart
# from the old process, so a very fresh mysqld is first let age a little.
MIN_PROVABLE_UPTIME = 3
# Uptime is whole seconds; this margin covers its rounding when comparing with elapsed time.
UPTIME_SLACK = 1.5


class Waiter:
    def __init__(self, scope: RunScope) -> None:
        self.scope = scope

    def wait(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        host: str | None,
        timeout: float,
        describe: Callable[[], str] | None = None,
    ) -> T:
        """poll_until with progress reporting; a timeout or ``StopWaiting`` fails the gate."""
        clock = self.scope.clock
        last_report = [clock.now()]
        waiting = [False]

        def on_wait(_pause: float) -> None:
            self.scope.interrupts.check()  # a safe point: between two polls
            if not waiting[0]:  # the first look did not hold: say what the run waits on
                waiting[0] = True
                self.scope.log.info("wait.started", what=what, host=host, timeout_s=timeout)
            now = clock.now()
            if describe is not None and now - last_report[0] >= 2.0:
                last_report[0] = now
                self.scope.progress(host, f"waiting: {what}: {describe()}")

        try:
            return poll_until(
                check,
                what=what,
                timeout=timeout,
                clock=clock,
                describe=describe,
                on_wait=on_wait,
                interval=0.05,
                max_interval=0.5,
            )
        except StopWaiting as exc:
            raise GateFailed(what, host, exc.reason) from None
        except WaitTimeout as exc:
            raise GateFailed(
                what, host, f"{what}: not reached within {timeout:g} s (last seen: {exc.last})"
            ) from None

    # --- MHA -----------------------------------------------------------------------------

    def mha_stopped(self, timeout: float) -> None:
        seen: dict[str, MhaStatus] = {}

        def check() -> bool | None:
            st = seen["last"] = self.scope.mha.status()
            if st.failover_in_progress():
                raise StopWaiting(f"MHA started a failover while stopping: {st.describe()}")
            return True if st.stopped() else None

        self.wait(
            check,
            what="MHA stopped (NOT_RUNNING)",
            host=self.scope.group.mha.manager.name,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def mha_running(self, timeout: float, started: int | None = None) -> None:
        """Until MHA monitors (PING_OK). It died once it was seen running and then stopped, or
        once ``started`` (the manager process this run started) is gone while its status still
        says NOT_RUNNING; slow to start is not dead (a loaded host takes seconds to compile
        MHA's Perl). Unknown process: the status alone decides, until ``timeout``."""
        mha = self.scope.mha
        seen_alive = [False]
        seen: dict[str, MhaStatus] = {}

        def check() -> bool | None:
            st = seen["last"] = mha.status()
            if st.healthy():
                return True
            if st.running():
                seen_alive[0] = True
            if st.failover_in_progress() or st.state is MhaState.FAILOVER_ERROR:
                raise StopWaiting(f"MHA is failing over: {st.describe()}")
            if st.stopped() and (
                seen_alive[0] or (started is not None and mha.alive(started) is False)
            ):
                raise StopWaiting(
                    f"MHA died after starting ({st.describe()}); log tail:\n" + mha.log_tail(20)
                )
            if st.state is MhaState.CONFIG_ERROR:
                raise StopWaiting(
                    "MHA reports a configuration error; log tail:\n" + mha.log_tail(20)
                )
            return None

        self.wait(
            check,
            what="MHA monitoring (PING_OK)",
            host=self.scope.group.mha.manager.name,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    # --- mysqld --------------------------------------------------------------------------

    def restarted(self, host: str, issued_at: float, timeout: float) -> None:
        """mysqld answers and its Uptime is younger than the restart command.

        The old process is at least MIN_PROVABLE_UPTIME seconds older than the command (see
        provable_uptime), so it can never pass this test.
        """
        probe = self.scope.sql(host)
        clock = self.scope.clock

        def check() -> int | None:
            uptime = probe.uptime()
            return uptime if uptime < (clock.now() - issued_at) + UPTIME_SLACK else None

        def describe() -> str:
            if not probe.ping():
                return "mysqld not answering yet"
            return f"mysqld answers, uptime {probe.uptime()} s (not restarted yet)"

        self.wait(
            check,
            what=f"{host}: mysqld restarted (Uptime reset)",
            host=host,
            timeout=timeout,
            describe=describe,
        )

    def provable_uptime(self, host: str) -> None:
        probe = self.scope.sql(host)
        if probe.uptime() >= MIN_PROVABLE_UPTIME:
            return
        self.wait(
            lambda: True if probe.uptime() >= MIN_PROVABLE_UPTIME else None,
            what=f"{host}: mysqld up for {MIN_PROVABLE_UPTIME} s (so its restart can be proven)",
            host=host,
            timeout=MIN_PROVABLE_UPTIME + 10,
        )

    # --- replication ---------------------------------------------------------------------

    def replica_status(self, host: str) -> ReplicaStatus:
        rs = self.scope.sql(host).replica_status()
        if rs is None:
            raise StopWaiting(f"{host} is no longer a replica (no replica status)")
        return rs

    def unbroken_replica_status(self, host: str, seen: dict[str, ReplicaStatus]) -> ReplicaStatus:
        """The replica's status, remembered in ``seen`` for the wait's progress text; a failed
        SQL thread ends the wait at once with the server's error."""
        rs = seen["last"] = self.replica_status(host)
        if rs.sql_broken():
            raise StopWaiting(f"replication SQL thread failed: {rs.error_text()}")
        return rs

    def threads(self, host: str, timeout: float) -> None:
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            return True if self.unbroken_replica_status(host, seen).threads_running() else None

        self.wait(
            check,
            what=f"{host}: replication IO and SQL threads running",
            host=host,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def caught_up(self, host: str, position: str, timeout: float) -> None:
        if not position:
            return
        probe = self.scope.sql(host)
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            self.unbroken_replica_status(host, seen)
            return True if probe.wait_for_gtid(position, 1.0) else None

        self.wait(
            check,
            what=f"{host}: applied GTID {position}",
            host=host,
            timeout=timeout,
            describe=lambda: "applying, " + _last(seen),
        )

    def lag(self, host: str, max_lag: float, timeout: float) -> None:
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            rs = self.unbroken_replica_status(host, seen)
            return True if rs.threads_running() and rs.lag_within(max_lag) else None

        self.wait(
            check,
            what=f"{host}: lag <= {max_lag:g} s",
            host=host,
            timeout=timeout,
            describe=lambda: _last(seen),
        )


def _last(seen: dict[str, ReplicaStatus] | dict[str, MhaStatus]) -> str:
    """What a wait's check saw last, without asking the host again just to describe it."""
    last = seen.get("last")
    return last.describe() if last is not None else "no answer yet"
