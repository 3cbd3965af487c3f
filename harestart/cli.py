"""The command line. The only place that maps exceptions to exit codes.

Commands load the inventory, print what they will do, and (for ``plan``) stop there. Nothing
that can touch a host is created before the plan has been built.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from harestart import __version__
from harestart.errors import ExitCode, HarestartError
from harestart.inventory import Inventory, load_inventory
from harestart.plan import build_plan, render_json, render_text
from harestart.secret import scrub

FORMAT = click.Choice(["text", "json"])


def _load(path: str) -> Inventory:
    inv = load_inventory(path)
    for w in inv.warnings:
        click.echo(w, err=True)
    return inv


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harestart")
def cli() -> None:
    """Restart a MySQL/MariaDB HA group (source + replicas watched by MHA) safely.

    Stops MHA, restarts mysqld on each replica then on the source, proving each node came back
    and caught up, then starts MHA again. Exit codes: 0 done, 1 failed during the run,
    2 usage or inventory error, 3 preflight refused (nothing changed), 4 group locked by
    another run, 130 interrupted.
    """


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
def plan(inventory: str, group_id: str | None, fmt: str, probe: bool) -> None:
    """Print the restart plan for INVENTORY without touching any host (dry run)."""
    inv = _load(inventory)
    groups = inv.select(group_id)
    plans = [build_plan(g) for g in groups]
    if probe:
        from harestart.probe import probe_plans  # imports the adapters only when needed

        plans = probe_plans(groups, plans)
    if fmt == "json":
        click.echo(render_json(plans))
    else:
        click.echo("\n\n".join(render_text(p) for p in plans))


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"harestart: {scrub(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: run the CLI, translating every error to a documented exit code."""
    try:
        rv = cli.main(args=argv, prog_name="harestart", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: exit 2 with click's own message
        exc.show()
        sys.exit(ExitCode.USAGE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted", ExitCode.INTERRUPTED)
    except HarestartError as exc:
        _fail(str(exc), exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else ExitCode.OK)
