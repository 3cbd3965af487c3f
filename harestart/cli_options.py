"""The command line's options: the ``click`` declarations several commands share, and what
they turn into (``PlanOptions``, ``RunRequest``). ``harestart.cli`` declares the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from harestart.domain.plan.model import PlanOptions
from harestart.domain.switch import LongTransactions, SourceStrategy
from harestart.engine.limits import MAX_PREFLIGHT_PARALLEL, PREFLIGHT_PARALLEL
from harestart.inventory.model import Inventory

if TYPE_CHECKING:  # imported when a run needs it: `plan` loads no engine
    from harestart.engine.run import RunRequest

FORMAT = click.Choice(["text", "json"])
T = TypeVar("T")


def switch_options(f: Callable[..., T]) -> Callable[..., T]:
    """The switchover strategy's options (see README, "Source strategies")."""
    f = click.option(
        "--long-transactions",
        type=click.Choice([x.value for x in LongTransactions]),
        default=LongTransactions.REFUSE.value,
        show_default=True,
        help="switchover: a transaction on the source open longer than "
        "--running-updates-limit refuses the switch, or its session is killed first.",
    )(f)
    f = click.option(
        "--running-updates-limit",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        metavar="SECONDS",
        help="switchover: the longest a transaction on the source may be open (like MHA's).",
    )(f)
    f = click.option(
        "--switch-max-lag",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        metavar="SECONDS",
        help="switchover: the most the candidate may lag when a switch begins.",
    )(f)
    f = click.option(
        "--switch-back/--no-switch-back",
        default=True,
        show_default=True,
        help="switchover: move the source role back at the end (the inventory's topology); "
        "--no-switch-back keeps the candidate as the source (change the inventory after).",
    )(f)
    return click.option(
        "--source-strategy",
        type=click.Choice([x.value for x in SourceStrategy]),
        default=None,
        help="restart: the source restarts in place (writes stop meanwhile); switchover: the "
        "source role moves to a replica first, the old source restarts as a replica. "
        "Default: the inventory's `source_strategy:` (restart).",
    )(f)


def plan_options(
    *,
    replica_parallelism: int,
    preflush: bool,
    detach_replicas: bool,
    offline_mode: bool,
    source_strategy: str | None,
    switch_back: bool,
    switch_max_lag: float,
    running_updates_limit: float,
    long_transactions: str,
) -> PlanOptions:
    return PlanOptions(
        replica_parallelism=replica_parallelism,
        preflush=preflush,
        detach_replicas=detach_replicas,
        offline_mode=offline_mode,
        source_strategy=SourceStrategy(source_strategy) if source_strategy else None,
        switch_back=switch_back,
        switch_max_lag=switch_max_lag,
        running_updates_limit=running_updates_limit,
        long_transactions=LongTransactions(long_transactions),
    )


def plan_change_options(f: Callable[..., T]) -> Callable[..., T]:
    """Options that change the plan (shared by plan, run and resume)."""
    f = switch_options(f)
    f = click.option(
        "--detach-replicas/--no-detach-replicas",
        default=True,
        show_default=True,
        help="Before restarting the source, stop every replica's IO thread and wait (up to "
        "10 s) until the source lists no Binlog Dump thread, so its shutdown does not wait for "
        "idle senders (~10 s on MySQL); start them again the moment it answers. Nothing is "
        "lost: replicas fetch what they lack by GTID.",
    )(f)
    f = click.option(
        "--offline-mode/--no-offline-mode",
        default=True,
        show_default=True,
        help="MySQL: right before restarting the source in place, SET GLOBAL offline_mode=ON: "
        "the application's sessions (accounts without CONNECTION_ADMIN/SUPER) are sent away, "
        "so the shutdown skips its fixed 2 s wait for client threads. A restart clears it; a "
        "step that fails before the restart sets it OFF again. MariaDB: nothing is sent.",
    )(f)
    f = click.option(
        "--preflush",
        is_flag=True,
        help="Before restarting the source, set innodb_max_dirty_pages_pct=0 and wait until "
        "dirty pages are flushed (or the catch-up timeout), so its shutdown is short.",
    )(f)
    return click.option(
        "--replica-parallelism",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="K",
        help="Restart up to K replicas at once, never leaving fewer than the group's "
        "health.min_healthy_replicas (default 1) running; the plan shows the batches.",
    )(f)


def run_options(f: Callable[..., int]) -> Callable[..., int]:
    """Options shared by ``run`` and ``resume``."""
    options = [
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        click.option(
            "--format",
            "fmt",
            type=FORMAT,
            default="text",
            show_default=True,
            help="json: one JSON result on stdout, progress on stderr.",
        ),
        click.option(
            "--log-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="JSON log of every command, query and gate "
            "(default: a new file under $HARESTART_STATE_DIR/logs).",
        ),
        click.option(
            "--on-failure",
            "on_failure",
            default="restore-mha-if-healthy",
            show_default=True,
            type=click.Choice(["restore-mha-if-healthy", "leave-mha-stopped"]),
            help="After a failed step, start MHA again only if every replica replicates from "
            "the source, or always leave it stopped.",
        ),
        click.option(
            "--break-lock",
            is_flag=True,
            help="Take over the group's lock if the run holding it has died (stale lock).",
        ),
        click.option("--verbose", "-v", is_flag=True, help="Also print debug events on stderr."),
        click.option(
            "--metrics-textfile",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            help="At the end, write the run's Prometheus metrics (restarts by result, "
            "durations, final state) to PATH for node_exporter's textfile collector "
            "(atomically: a temporary file in the same directory, then renamed).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return plan_change_options(f)


def only_pending_options(f: Callable[..., int]) -> Callable[..., int]:
    """``run --only-pending`` (#23; a resume follows its journal instead)."""
    f = click.option(
        "--pending-unknown",
        type=click.Choice(["restart", "skip"]),
        default="restart",
        show_default=True,
        help="--only-pending: a node whose pending restarts harestart cannot tell (a reason "
        "`unknown: ...`) is restarted, or left running.",
    )(f)
    return click.option(
        "--only-pending",
        is_flag=True,
        help="Restart only the nodes that need it (see `status`: an option that changes only "
        "at a restart, a persisted setting, a replaced binary or library, a package, a mark); "
        'a group with nothing pending is skipped ("nothing pending", exit 0, MHA untouched). '
        "The source's step (or the switch) runs only when the source is pending.",
    )(f)


def preflight_option(f: Callable[..., T]) -> Callable[..., T]:
    """How many groups are probed at once (``run``, ``status``, ``plan --probe``)."""
    return click.option(
        "--preflight-parallel",
        type=click.IntRange(min=1, max=MAX_PREFLIGHT_PARALLEL),
        default=PREFLIGHT_PARALLEL,
        show_default=True,
        metavar="N",
        help="Probe up to N groups at the same time (read-only: SSH, MySQL, MHA; plan: with "
        "--probe) before "
        f"anything changes, 1 to {MAX_PREFLIGHT_PARALLEL}; results and refusals are shown in "
        "inventory order.",
    )(f)


def run_request(
    inv: Inventory,
    log_path: Path,
    *,
    resume: bool,
    discard_unfinished: bool,
    on_failure: str,
    break_lock: bool,
    only_pending: bool = False,
    pending_unknown: str = "restart",
    preflight_parallel: int = PREFLIGHT_PARALLEL,
    **kw: Any,
) -> RunRequest:
    from harestart.engine.run import FailurePolicy, RunRequest

    return RunRequest(
        inventory=inv.path,
        failure_policy=FailurePolicy(on_failure),
        break_lock=break_lock,
        discard_unfinished=discard_unfinished,
        command="harestart resume" if resume else "harestart run",
        plan=plan_options(**kw),
        log_file=str(log_path),
        only_pending=only_pending,
        unknown_pending=pending_unknown == "restart",
        preflight_parallel=preflight_parallel,
    )


def tls_options(f: Callable[..., T]) -> Callable[..., T]:
    """``serve`` over HTTPS."""
    f = click.option(
        "--tls-key", metavar="PATH", help="The PEM private key of --tls-cert (unencrypted)."
    )(f)
    return click.option(
        "--tls-cert",
        metavar="PATH",
        help="Serve HTTPS (TLS >= 1.2) with this PEM certificate (chain); needs --tls-key.",
    )(f)


def serve_options(f: Callable[..., T]) -> Callable[..., T]:
    """How ``serve`` observes, how many requests it answers at once, and its limits on
    connections (see the README's "Security")."""
    f = click.option(
        "--max-connections",
        type=click.IntRange(min=1),
        default=1000,
        show_default=True,
        metavar="N",
        help="Connections open at once; at it a new one takes the place of a request arriving "
        "for over 1 s, else gets 503 (TLS: is closed). Lowered to what the open-files limit "
        "leaves beside a restart's SSH and MySQL sessions.",
    )(f)
    f = click.option(
        "--request-timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        metavar="SECONDS",
        help="A whole request (headers and body, or a TLS handshake) must arrive within this "
        "time; a client still sending then gets 400 and is disconnected.",
    )(f)
    f = click.option(
        "--max-workers",
        type=click.IntRange(min=1, max=1024),
        default=16,
        show_default=True,
        metavar="N",
        help="Requests handled at once; when all N are busy a request waits up to 0.25 s for "
        "one, then gets 503. Idle keep-alive connections hold no worker.",
    )(f)
    return click.option(
        "--observe-interval",
        type=click.FloatRange(min=0.5),
        default=10.0,
        show_default=True,
        metavar="SECONDS",
        help="Re-observe every group in the background this often; GET answers from the "
        "latest observation (observed_at) and never waits on a host.",
    )(f)
