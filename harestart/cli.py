"""The command line. The only place that maps exceptions to exit codes.

Commands load the inventory, print what they will do, and (for ``plan``) stop there. Nothing
that can touch a host is created before the plan has been built.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from harestart import __version__
from harestart.cli_options import (
    FORMAT,
    only_pending_options,
    plan_change_options,
    plan_options,
    preflight_option,
    run_options,
    run_request,
    serve_options,
    tls_options,
)
from harestart.cli_pending import clear_pending, mark_pending
from harestart.domain.group import Group
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Plan, PlanOptions
from harestart.domain.secret import scrub
from harestart.domain.switch import SourceStrategy, choose_candidate
from harestart.errors import ExitCode, HarestartError, UsageError
from harestart.inventory.load import load_inventory
from harestart.inventory.model import Inventory
from harestart.inventory.needs import require_strategy
from harestart.inventory.yamlsafe import collector_paused
from harestart.views.plan import (
    Wording,
    inventory_wording,
    observed_wording,
    pieces,
    render_text,
    wording_for,
)

if TYPE_CHECKING:
    from harestart.engine.execute import Listener, Outcome
    from harestart.engine.run import Environment


def _load(path: str, *, freeze: bool = True, secret_env: dict[str, str] | None = None) -> Inventory:
    inv = load_inventory(path, secret_env=secret_env)
    if freeze:
        # The inventory lives as long as the command: keep the cyclic GC from walking it again
        # and again (a 10,000-group plan spends ~15% of its time there); undone on the way out.
        gc.freeze()
        click.get_current_context().call_on_close(gc.unfreeze)
    for w in inv.warnings:
        click.echo(w, err=True)
    if click.get_current_context().find_root().params.get("accept_new_host_keys"):
        inv = inv.accepting_new_host_keys()
    return inv


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harestart")
@click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Accept SSH host keys not yet in known_hosts and add them there (changed keys are "
    "always refused). Default: unknown keys are refused.",
)
def cli(accept_new_host_keys: bool) -> None:
    """Restart a MySQL/MariaDB HA group (source + replicas watched by MHA) safely.

    Stops MHA, restarts mysqld on each replica then on the source, proving each node came back
    and caught up, then starts MHA again. Exit codes: 0 done, 1 failed during the run,
    2 usage or inventory error, 3 preflight refused (nothing changed), 4 group locked by
    another run, 130 interrupted.
    """


def _strategy_checked(inv: Inventory, groups: tuple[Group, ...], options: PlanOptions) -> None:
    """What the chosen strategy needs (``inventory.needs``, as at load; its passwords:
    ``engine.prepare``); --no-switch-back said loudly (the inventory is wrong once it is done)."""
    require_strategy(inv.path, groups, options.source_strategy)
    for g in groups:
        if options.strategy(g) is SourceStrategy.SWITCHOVER and not options.switch_back:
            cand = choose_candidate(g).name
            click.echo(
                f"*** --no-switch-back: group {g.id} will END WITH {cand} AS ITS SOURCE; "
                f"change the inventory afterwards: `source:` {cand}, and {g.source.name} "
                "under `replicas:` ***",
                err=True,
            )


@cli.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", help="Only this group (default: all groups).")
@click.option("--format", "fmt", type=FORMAT, default="text", show_default=True)
@click.option(
    "--probe",
    is_flag=True,
    help="Also connect read-only (SSH, MySQL, MHA status), annotate the plan with what was "
    "found, and refuse (exit 3) when reality contradicts the inventory.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Text: also every check (gate) and each command exactly as sent (its wrapper).",
)
@preflight_option
@plan_change_options
def plan(
    inventory: str,
    group_id: str | None,
    fmt: str,
    probe: bool,
    verbose: bool,
    preflight_parallel: int,
    **kw: Any,
) -> None:
    """Print the restart plan for INVENTORY without touching any host (dry run).

    Text: one line per action, in the words of the server it meets (the version found with
    --probe, else the inventory's `flavor:`, else every server's form)."""
    inv = _load(inventory)
    groups = inv.select(group_id)
    options = plan_options(**kw)
    _strategy_checked(inv, groups, options)
    # One group's plan at a time, built as it is written (views.plan.pieces).
    plans: Iterable[Plan] = (build_plan(g, options) for g in groups)
    wordings: Iterable[Wording] = (inventory_wording(g) for g in groups)
    if probe:
        from harestart.engine.run import probed

        env = _environment()  # imports the adapters only when needed
        _configure_logging(None, verbose=False)
        found = probed(groups, list(plans), env=env, parallel=preflight_parallel)
        plans, wordings = [p for p, _ in found], [observed_wording(st) for _, st in found]
    with collector_paused():  # a plan makes no reference cycle: see views.plan.pieces
        for piece in pieces(plans, wordings, len(groups), fmt=fmt, verbose=verbose):
            click.echo(piece, nl=False)
    click.echo()
    if not probe:  # --probe's connections are left to their own finalisers
        _exit_without_collecting()


def _exit_without_collecting() -> None:
    """Let the interpreter's exit skip its last collections: they walk every object still
    alive (the modules', pydantic's schemas...), ~25 ms of a 1,000-group plan's 0.5 s, after
    its output. Frozen at exit (``atexit``), after the command: objects are still freed (their
    modules cleared), only cyclic garbage is left to the system, and a plan without --probe
    leaves none that needs finalising (it wrote stdout alone, which Python flushes at exit
    all the same)."""
    atexit.unregister(gc.freeze)  # once, however many plans a process (a test) makes
    atexit.register(gc.freeze)


def _select(inv: Inventory, group_id: str | None, all_groups: bool) -> tuple[Group, ...]:
    if group_id and all_groups:
        raise UsageError("give either --group ID or --all, not both")
    if group_id or all_groups:
        return inv.select(group_id)
    if len(inv.groups) == 1:
        return inv.groups
    ids = ", ".join(g.id for g in inv.groups)
    raise UsageError(f"{inv.path} has {len(inv.groups)} groups ({ids}): choose --group ID or --all")


def _environment() -> Environment:
    """The Environment given to ``main`` (tests: the fakes), else the real hosts."""
    obj = click.get_current_context().find_root().obj
    if obj is not None:
        return cast("Environment", obj)
    from harestart.wiring import environment  # imports the adapters only when needed

    return environment()


def _checked_state(env: Environment, *, create: bool) -> Environment:
    """Refuse (exit 2) an untrusted state directory: a symbolic link, not ours, writable by
    others (``engine.state.private``); ``create``: make it (0700) when missing."""
    from harestart.engine.state.private import check_state_dir

    check_state_dir(env.state_dir, create=create)
    return env


def _configure_logging(log_file: Path | None, *, verbose: bool) -> None:
    from harestart import log

    log.configure(log_file=log_file, verbose=verbose)


@cli.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", help="The group to restart.")
@click.option("--all", "all_groups", is_flag=True, help="Restart every group of the inventory.")
@click.option(
    "--discard-unfinished",
    is_flag=True,
    help="Start from scratch even if an earlier run of the group did not finish.",
)
@click.option(
    "--parallel-groups",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="With --all: restart up to N independent groups at the same time; one group's "
    "failure does not stop the others.",
)
@preflight_option
@only_pending_options
@run_options
def run(
    inventory: str,
    group_id: str | None,
    all_groups: bool,
    discard_unfinished: bool,
    parallel_groups: int,
    **kw: Any,
) -> int:
    """Restart the group(s) in INVENTORY: MHA off, replicas, source, MHA on.

    Preflight first (exit 3, nothing changed, if reality contradicts the inventory); then a
    confirmation unless --yes; then each step with its gates. Exit 0 when every group is
    ACTIVE again, 1 when a step failed, 4 when another run holds the group, 130 when
    interrupted (resume with `harestart resume`).
    """
    inv = _load(inventory)
    groups = _select(inv, group_id, all_groups)
    return _execute(
        inv,
        groups,
        resume=False,
        discard_unfinished=discard_unfinished,
        parallel_groups=parallel_groups,
        **kw,
    )


@cli.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", help="The group whose run to continue.")
@run_options
def resume(inventory: str, group_id: str | None, **kw: Any) -> int:
    """Continue the unfinished run of a group from its first unfinished step.

    Re-checks reality first: the source, the replicas and their server ids must be those the
    run began with (else exit 3); a node the earlier attempt already restarted is not
    restarted again.
    """
    inv = _load(inventory)
    groups = _select(inv, group_id, False)
    return _execute(inv, groups, resume=True, discard_unfinished=False, parallel_groups=1, **kw)


def _execute(
    inv: Inventory,
    groups: tuple[Group, ...],
    *,
    resume: bool,
    yes: bool,
    fmt: str,
    log_file: Path | None,
    verbose: bool,
    parallel_groups: int,
    metrics_textfile: Path | None = None,
    **options: Any,
) -> int:
    """`run`/`resume`: prepare, show the plans, confirm, execute, render (the engine decides)."""
    from harestart.engine.execute import execute
    from harestart.engine.prepare import prepare
    from harestart.engine.run import default_log_file
    from harestart.engine.sequencer.interrupts import InterruptFlag, graceful_signals
    from harestart.views.metrics import RunTextfile
    from harestart.views.outcome import FLEET_MODE, SummaryListener
    from harestart.views.progress import TextReporter

    env = _checked_state(_environment(), create=True)
    log_path = log_file or default_log_file(env, [g.id for g in groups])
    _configure_logging(log_path, verbose=verbose)
    out = sys.stdout if fmt == "text" else sys.stderr
    click.echo(f"log file: {log_path}", file=out)
    request = run_request(inv, log_path, resume=resume, **options)
    _strategy_checked(inv, groups, request.plan)
    several = len(groups) > 1
    textfile = RunTextfile(metrics_textfile) if metrics_textfile is not None else None
    listeners: list[Listener] = [
        SummaryListener(out, sys.stderr, summaries=fmt == "text", several=several)
    ]
    listeners += [textfile.listener] if textfile is not None else []
    flag = InterruptFlag()
    with prepare(groups, request, env, resume=resume) as prepared:
        if prepared.fleet:
            click.echo(FLEET_MODE, file=out)
        if prepared.plans and not prepared.refusals:  # in the words of the servers found
            texts = (render_text(r.plan, wording_for(r.group, r.observed)) for r in prepared.ready)
            click.echo("\n\n".join(texts), file=out)
        ask = not (prepared.refusals or prepared.idle or yes)
        if ask and not _confirmed(groups, resume=resume, err=fmt != "text"):
            click.echo("nothing was changed", file=out)
            return int(ExitCode.OK)
        with graceful_signals(flag, lambda msg: click.echo(f"harestart: {msg}", err=True)):
            outcome = execute(
                prepared,
                listeners,
                reporter=TextReporter(out, prefix_group=several),
                interrupts=flag,
                parallel=parallel_groups,
            )
    problem = textfile.write(env, groups, outcome) if textfile is not None else None
    if problem is not None:  # also written when every group was refused
        click.echo(f"harestart: {problem}", err=True)
    return _report(inv, groups, outcome, fmt)


def _confirmed(groups: tuple[Group, ...], *, resume: bool, err: bool) -> bool:
    """Ask the person at the terminal; refuse (exit 2) when there is none."""
    if not sys.stdin.isatty():
        raise UsageError("not on a terminal: pass --yes to restart without confirmation")
    names = ", ".join(g.id for g in groups)
    verb = "Resume the run of" if resume else "Restart"
    return click.confirm(f"{verb} group(s) {names} now?", default=False, err=err)


def _report(inv: Inventory, groups: tuple[Group, ...], outcome: Outcome, fmt: str) -> int:
    """Render the results (JSON on stdout with --format json); the outcome's exit code. One
    group's refusal is the command's error (raised: one message, its exit code)."""
    from harestart.views.outcome import outcome_json, text_tail, unfinished_hints

    if len(groups) == 1 and outcome.refusals:
        raise outcome.refusals[0].error
    text = [outcome_json(outcome, several=len(groups) > 1)] if fmt == "json" else None
    for line in text or text_tail(outcome):
        click.echo(line)
    for line in unfinished_hints(outcome, inv.path):
        click.echo(line, err=True)
    return int(outcome.exit_code)


cli.add_command(mark_pending)
cli.add_command(clear_pending)


@cli.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", help="Only this group (default: all).")
@click.option("--format", "fmt", type=FORMAT, default="text", show_default=True)
@preflight_option
def status(inventory: str, group_id: str | None, fmt: str, preflight_parallel: int) -> int:
    """Read-only view: every node's role, version, uptime, read_only, replication, pending
    restarts and configuration drift, and MHA.

    The group's state (ACTIVE, REBOOT, ERROR) is judged as the HTTP API judges it.
    """
    from harestart.engine.run import observe_groups
    from harestart.views.status import read_run_facts, render_status_text, status_document

    inv = _load(inventory)
    groups = inv.select(group_id)
    env = _checked_state(_environment(), create=False)
    _configure_logging(None, verbose=False)
    docs = [
        status_document(g, st, read_run_facts(env, g, inventory=inv.path), inventory=inv.path)
        for g, st in observe_groups(
            groups, env=env, detect_pending=True, parallel=preflight_parallel
        )
    ]
    if fmt == "json":
        click.echo(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
    else:
        click.echo("\n\n".join(render_status_text(d) for d in docs))
    healthy = all(d["healthy"] for d in docs)
    return int(ExitCode.OK if healthy else ExitCode.RUN_FAILED)


@cli.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8779, show_default=True, help="0: any."
)
@click.option(
    "--tokens",
    "tokens_file",
    metavar="FILE",
    help="YAML or JSON mapping X-Auth-Token (or sha256:<hex digest>) -> account (a tenant) or "
    "{operator: true}; mode 0600.",
)
@click.option(
    "--tokens-env", metavar="NAME", help="Environment variable holding that mapping instead."
)
@serve_options
@tls_options
@click.option("--verbose", "-v", is_flag=True, help="Also log debug events (every SQL statement).")
def serve(
    inventory: str,
    host: str,
    port: int,
    tokens_file: str | None,
    tokens_env: str | None,
    observe_interval: float,
    max_workers: int,
    max_connections: int,
    request_timeout: float,
    tls_cert: str | None,
    tls_key: str | None,
    verbose: bool,
) -> NoReturn:
    """Serve the Cloud Databases HA API for INVENTORY over HTTP(S) (loopback by default).

    POST /v1.0/{accountId}/ha/{haId}/action {"restart": {}} restarts a group in the
    background (202); GET /v1.0/{accountId}/ha[/{haId}] shows groups, states and the last
    restart, from observations taken in the background. GET /openapi.json (no token) is the
    contract; GET /metrics (an operator's token) gives Prometheus metrics. Logs are JSON lines
    on stderr.
    SIGTERM: stop accepting work, let running restarts stop at their next safe point, exit 0.
    """
    from harestart import log
    from harestart.http.server import load_tokens, tls_context
    from harestart.http.server import serve as serve_api

    log.configure_json_stream(sys.stderr, verbose=verbose)
    # The tokens' variable holds secrets: no hook may get it (hooks.env_passthrough).
    secret_env = {tokens_env: "serve --tokens-env names it"} if tokens_env else {}
    # First, before listening: an inventory `plan` refuses, serve refuses too (exit 2), with
    # the same lines. serve reloads the inventory: not frozen, so old ones can be collected.
    inv = _load(inventory, freeze=False, secret_env=secret_env)
    tokens = load_tokens(tokens_file, tokens_env)
    tls = tls_context(tls_cert, tls_key)
    _checked_state(_environment(), create=True)  # where its restarts keep locks and journals
    accept = bool(click.get_current_context().find_root().params.get("accept_new_host_keys"))
    _exit_now(serve_api(inv, host=host, port=port, tokens=tokens, accept_new_host_keys=accept,
                        observe_interval=observe_interval, max_workers=max_workers,
                        max_connections=max_connections, request_timeout=request_timeout,
                        tls=tls, secret_env=secret_env))  # fmt: skip


def _exit_now(code: int) -> NoReturn:
    """``serve`` stopped cleanly (restarts ended, listener closed). A background observation
    may still wait on a dead host's SSH or MySQL timeout, and the interpreter would join its
    threads on the way out: leave without them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"harestart: {scrub(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None, *, env: Environment | None = None) -> NoReturn:
    """Console entry point: run the CLI, translating every error to a documented exit code.

    ``env`` replaces the real hosts and state directory (tests run the CLI on the fakes)."""
    try:
        rv = cli.main(args=argv, prog_name="harestart", standalone_mode=False, obj=env)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: exit 2 with click's own message
        exc.show()
        sys.exit(ExitCode.USAGE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted", ExitCode.INTERRUPTED)
    except HarestartError as exc:
        _fail(str(exc), exc.exit_code)
    finally:  # the run log closed (only a command that logs imported it)
        if "harestart.log" in sys.modules:
            sys.modules["harestart.log"].close()
    sys.exit(rv if isinstance(rv, int) else ExitCode.OK)
