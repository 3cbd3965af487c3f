"""What a strategy or a coordination setting needs is checked when the inventory is loaded.

``plan``, ``run`` and ``serve`` refuse the same inventory with the same line (file, line, key,
group, what is missing) and exit 2; ``serve`` before it listens (#22: it started, and its POST
answered 500). A strategy chosen on the command line is checked by the same function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from harestart import cli
from harestart.domain.switch import SourceStrategy
from harestart.errors import ExitCode, InventoryError
from harestart.http.api import InventoryUnavailable
from harestart.http.server import InventoryFile
from harestart.inventory.load import load_inventory, parse_inventory
from harestart.inventory.needs import require_strategy
from tests.unit.test_cli_run import Lab, Outcome

REPO = Path(__file__).resolve().parents[2]
NEED_ACCOUNT = (
    "the switchover strategy needs the replication account (the one replicas connect with, "
    "re-pointed by the switch): `replication: {user: repl, password_env: NAME}` (or "
    "password_file) under defaults or the group"
)


def inventory(defaults: str = "", group: str = "") -> str:
    """One group on the fakes' names (tests.unit.test_cli_run) with more ``defaults:`` and
    group entries, each a YAML line of its own."""
    return (
        "defaults:\n"
        "  mysql: {user: harestart, password: pw-for-tests}\n"
        "  health: {restart_timeout: 30, catchup_timeout: 30, failover_timeout: 20}\n"
        f"{defaults}"
        "groups:\n"
        "  - id: a\n"
        "    account: '1'\n"
        "    source: {name: a1, address: 10.0.0.1}\n"
        "    replicas:\n"
        "      - {name: a2, address: 10.0.0.2}\n"
        "      - {name: a3, address: 10.0.0.3}\n"
        "    mha: {manager: {name: mha-a, address: 10.0.0.9}, config: /etc/mha/a.cnf}\n"
        f"{group}"
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield Lab(tmp_path, ["a"])
    structlog.reset_defaults()  # run configured logging to a file under tmp_path


def harestart(
    lab: Lab, capsys: pytest.CaptureFixture[str], *args: str, text: str | None = None
) -> Outcome:
    """The CLI in-process on the fakes, on ``text`` written as the lab's inventory."""
    if text is not None:
        lab.inventory.write_text(text)
    command, *rest = args
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, str(lab.inventory), *rest], env=lab.env)
    out, err = capsys.readouterr()
    code = exit_.value.code
    return Outcome(code if isinstance(code, int) else -1, out, err)


def refused(r: Outcome) -> list[str]:
    """The problem lines of an inventory refusal (exit 2, no traceback)."""
    assert r.code == ExitCode.USAGE, (r.code, r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = [line for line in r.err.splitlines() if ": warning: " not in line]  # inline password
    assert lines[0].startswith("harestart: ") and lines[0].endswith(" in the inventory"), r.err
    return [line.strip() for line in lines[1:]]


# --- the strategy's needs --------------------------------------------------------------------


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "args", [("plan",), ("run", "--yes"), ("resume", "--yes"), ("status",)], ids=lambda a: a[0]
)
def test_switchover_in_the_defaults_without_the_replication_account_is_refused_at_load(
    lab: Lab, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    text = inventory(defaults="  source_strategy: switchover\n")
    (line,) = refused(harestart(lab, capsys, *args, text=text))
    n = line_of(text, "source_strategy")
    assert line == f"{lab.inventory}:{n}: defaults.source_strategy (group 'a'): {NEED_ACCOUNT}"
    assert lab.restarts("a") == [0, 0, 0] and not lab.state.exists()


def test_switchover_in_the_group_names_the_groups_key(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    text = inventory(group="    source_strategy: switchover\n")
    (line,) = refused(harestart(lab, capsys, "plan", text=text))
    n = line_of(text, "source_strategy")
    assert line == f"{lab.inventory}:{n}: groups[0].source_strategy (group 'a'): {NEED_ACCOUNT}"


def test_a_replication_account_without_a_password_is_refused(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    text = inventory(defaults="  source_strategy: switchover\n  replication: {user: repl}\n")
    (line,) = refused(harestart(lab, capsys, "plan", text=text))
    assert line.endswith(
        "defaults.source_strategy (group 'a'): the switchover strategy needs the replication "
        "account's password: `replication.password_env: NAME` (or password_file) under "
        "defaults or the group"
    )


def test_a_group_keeping_the_restart_strategy_needs_no_replication_account(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    text = inventory(
        defaults="  source_strategy: switchover\n", group="    source_strategy: restart\n"
    )
    r = harestart(lab, capsys, "plan", text=text)
    assert r.code == 0 and "[restart_source]" in r.out, r.err


@pytest.mark.parametrize("args", [("plan",), ("run", "--yes")], ids=lambda a: a[0])
def test_switchover_chosen_on_the_command_line_gets_the_same_words(
    lab: Lab, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    r = harestart(lab, capsys, *args, "--source-strategy", "switchover", text=inventory())
    (line,) = refused(r)
    assert line == f"{lab.inventory}: --source-strategy switchover (group 'a'): {NEED_ACCOUNT}"
    assert lab.restarts("a") == [0, 0, 0]


def test_run_refuses_an_unset_replication_password_before_anything(
    lab: Lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account is the inventory's business (at load); its password's variable is read when
    a run needs it (plan never does), still before anything changes."""
    monkeypatch.delenv("HS_NEEDS_REPL_PW", raising=False)
    text = inventory(defaults="  replication: {user: repl, password_env: HS_NEEDS_REPL_PW}\n")
    assert harestart(lab, capsys, "plan", "--source-strategy", "switchover", text=text).code == 0
    r = harestart(lab, capsys, "run", "--source-strategy", "switchover", "--yes")
    assert r.code == ExitCode.USAGE and "Traceback" not in r.err
    assert "group a replication: the MySQL password variable HS_NEEDS_REPL_PW is not set" in r.err
    assert lab.restarts("a") == [0, 0, 0]


def test_require_strategy_checks_each_groups_own_strategy_too() -> None:
    """The engine may be handed groups that were not loaded from a file: the same check."""
    group = parse_inventory(inventory(), "inv.yml").groups[0]
    require_strategy("inv.yml", (group,), None)  # restart needs nothing
    switching = replace(group, source_strategy="switchover")
    with pytest.raises(InventoryError) as exc:
        require_strategy("inv.yml", (switching,), None)
    assert exc.value.problems == [f"inv.yml: source_strategy (group 'a'): {NEED_ACCOUNT}"]
    with pytest.raises(InventoryError):
        require_strategy("inv.yml", (group,), SourceStrategy.SWITCHOVER)


# --- the coordination service's needs --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("consul://c1:8500", "unknown scheme 'consul' (known: etcd3+http, etcd3+https, "
         "zookeeper, redis, file)"),
        ("redis://r1:99999", "has an invalid port (a number from 1 to 65535 after the host)"),
        ("redis://r1:0", "has an invalid port (a number from 1 to 65535 after the host)"),
        ("etcd3+https://e1:2379?ca_cert=certs/ca.pem",
         "ca_cert=certs/ca.pem: give the file's absolute path"),
        ("etcd3+https://e1:2379?ca_cert=/nonexistent/ca.pem", "ca_cert=/nonexistent/ca.pem: no such file"),
    ],
)  # fmt: skip
def test_what_the_coordination_url_needs_is_checked_at_load(
    lab: Lab, capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    text = inventory(defaults=f"  coordination: {{url: '{url}', password_env: HS_NEEDS_PW}}\n")
    (line,) = refused(harestart(lab, capsys, "plan", text=text))
    assert line.startswith(f"{lab.inventory}:4: defaults.coordination.url: {problem}"), line


def test_an_existing_absolute_ca_file_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = f"etcd3+https://e1:2379?ca_cert={ca}&cert_cert={ca}&cert_key={ca}&timeout=5"
    inv = parse_inventory(inventory(defaults=f"  coordination: {{url: '{url}'}}\n"), "inv.yml")
    assert inv.groups[0].coordination is not None


# --- serve: the same lines, exit 2, before listening -----------------------------------------


def _harestart_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harestart", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "defaults",
    [
        "  source_strategy: switchover\n",  # #22: serve started, POST answered 500
        "  coordination: {url: 'consul://c1:8500'}\n",
    ],
)
def test_serve_exits_2_at_start_with_the_lines_plan_prints(tmp_path: Path, defaults: str) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory(defaults=defaults))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HARESTART_STATE_DIR": str(tmp_path / "state"),
        "HS_NEEDS_TOKENS": json.dumps({"tok-needs-1f0c": "1"}),
    }
    plan = _harestart_process("plan", str(inv), env=env)
    serve = _harestart_process(
        "serve", str(inv), "--port", "0", "--tokens-env", "HS_NEEDS_TOKENS", env=env
    )
    assert plan.returncode == serve.returncode == ExitCode.USAGE, serve.stderr
    assert serve.stderr == plan.stderr and "1 problem in the inventory" in serve.stderr
    assert "api.listening" not in serve.stderr and "Traceback" not in serve.stderr
    assert not (tmp_path / "state").exists()  # refused before anything else


def test_serve_does_not_use_a_reloaded_inventory_that_lacks_a_need(tmp_path: Path) -> None:
    """A reload goes through the same load: an edit that asks for a switchover without the
    account makes the API answer that the inventory cannot be loaded (503), never 500."""
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory())
    inv_file = InventoryFile(str(inv), load_inventory(inv))
    assert inv_file.current().groups[0].id == "a"
    inv.write_text(inventory(defaults="  source_strategy: switchover\n") + "# edited\n")
    with capture_logs() as logs, pytest.raises(InventoryUnavailable, match="cannot be loaded"):
        inv_file.current()
    (event,) = [e for e in logs if e["event"] == "api.inventory.unavailable"]
    assert f"defaults.source_strategy (group 'a'): {NEED_ACCOUNT}" in event["error"]
