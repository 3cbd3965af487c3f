"""A hook's environment (#21 probe 8, "Hooks get every secret"): an allow-list, never
harestart's whole environment; ``hooks.env_passthrough`` adds names, never one holding a secret.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from harestart.adapters.hooks import SubprocessHookRunner
from harestart.domain.group import HookPoint
from harestart.domain.hooks import HOOK_VARIABLES, hook_variables, node_hook
from harestart.domain.plan.build import build_plan
from harestart.engine.sequencer.executor import Executor
from harestart.errors import ExitCode, InventoryError
from harestart.http.api import InventoryUnavailable
from harestart.http.server import InventoryFile
from harestart.inventory.load import load_inventory, parse_inventory
from harestart.views.plan import render_json, render_text
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld

REPO = Path(__file__).resolve().parents[2]

# harestart's environment on a bastion: every secret it holds, and what a hook may see.
SECRETS = {
    "HARESTART_MYSQL_PASSWORD": "mysql-pw-8f3a",  # mysql.password_env
    "REPL_PASSWORD": "repl-pw-41c9",  # replication.password_env
    "ETCD_PASSWORD": "etcd-pw-77d2",  # coordination.password_env
    "HARESTART_TOKENS": "s3cret-token-e1: '100001'",  # serve --tokens-env
    "DB2_PASSWORD": "node-pw-0b5e",  # a node's own mysql.password_env
}
ALLOWED = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "LC_TIME": "C",
    "TZ": "UTC",
}
PASSED = {"PROXY_URL": "http://proxy:9999"}
OTHER = {"SSH_AUTH_SOCK": "/run/ssh-agent.sock", "AWS_SECRET_ACCESS_KEY": "aws-9c1d"}


def inventory(defaults_hooks: str = "", group_hooks: str = "", coordination: bool = False) -> str:
    coord = (
        "  coordination: {url: 'etcd3+http://etcd:2379', password_env: ETCD_PASSWORD}\n"
        if coordination
        else ""
    )
    return (
        "defaults:\n"
        "  mysql: {user: harestart, password_env: HARESTART_MYSQL_PASSWORD}\n"
        "  replication: {user: repl, password_env: REPL_PASSWORD}\n"
        f"{coord}"
        f"{defaults_hooks}"
        "groups:\n  - id: lab\n    account: '1'\n"
        "    source: {name: db1, address: 10.0.0.1}\n"
        "    replicas:\n"
        "      - {name: db2, address: 10.0.0.2, mysql: {password_env: DB2_PASSWORD}}\n"
        "    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}\n"
        f"{group_hooks}"
    )


DUMP = "  hooks:\n    before_node_restart: 'env > env-$HARESTART_NODE'\n"


def test_a_hook_sees_no_secret_of_harestarts_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 8: every password_env variable, the tokens variable and the coordination password
    are set in harestart's environment; the hook (which dumps `env`) gets none of them, nor
    anything else outside the allow-list, and does get the allowed and passed-through names."""
    for name, value in {**SECRETS, **ALLOWED, **PASSED, **OTHER}.items():
        monkeypatch.setenv(name, value)
    hooks = DUMP + "    env_passthrough: [PROXY_URL]\n"
    group = parse_inventory(inventory(hooks), "inv.yml", base_dir=tmp_path).groups[0]
    world = FakeWorld.create(1)
    result = Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        hooks=SubprocessHookRunner(),
    ).run()
    assert result.ok, result.failure
    for node in ("db1", "db2"):
        dump = (tmp_path / f"env-{node}").read_text()
        env = dict(line.split("=", 1) for line in dump.splitlines() if "=" in line)
        for name, value in {**SECRETS, **OTHER}.items():
            assert name not in env and value not in dump, name
        assert {k: env.get(k) for k in ALLOWED} == ALLOWED
        assert env["PROXY_URL"] == PASSED["PROXY_URL"]
        assert env["HARESTART_NODE"] == node and env["HARESTART_HOOK"] == "before_node_restart"
        own = {k for k in env if k.startswith("HARESTART_")}
        assert own == set(HOOK_VARIABLES)


def test_hook_variables_are_the_names_the_inventory_keeps_out_of_the_passthrough() -> None:
    group = parse_inventory(inventory(DUMP), "inv.yml").groups[0]
    act = node_hook(group, HookPoint.BEFORE_NODE_RESTART, "db2")
    assert act is not None
    assert tuple(hook_variables(group, act, "r")) == HOOK_VARIABLES


@pytest.mark.parametrize(
    ("hooks", "coordination", "name", "why"),
    [
        (
            "    env_passthrough: [PROXY_URL, HARESTART_MYSQL_PASSWORD]\n",
            False,
            "HARESTART_MYSQL_PASSWORD",
            "defaults.mysql.password_env names it",
        ),
        (
            "    env_passthrough: [DB2_PASSWORD]\n",
            False,
            "DB2_PASSWORD",
            "groups[0].replicas[0].mysql.password_env names it",
        ),
        (
            "    env_passthrough: [REPL_PASSWORD]\n",
            False,
            "REPL_PASSWORD",
            "defaults.replication.password_env names it",
        ),
        (
            "    env_passthrough: [ETCD_PASSWORD]\n",
            True,
            "ETCD_PASSWORD",
            "defaults.coordination.password_env names it",
        ),
    ],
    ids=["mysql", "node-mysql", "replication", "coordination"],
)
def test_env_passthrough_refuses_a_password_variable(
    hooks: str, coordination: bool, name: str, why: str
) -> None:
    """Probe 8: a name some password_env of the inventory names is refused at load (exit 2),
    one line with file, line and field, in the defaults' list and in a group's."""
    text = inventory(DUMP + hooks, coordination=coordination)
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inv.yml")
    assert err.value.exit_code == ExitCode.USAGE
    (problem,) = err.value.problems
    line = text.splitlines().index(hooks.rstrip("\n")) + 1
    index = 1 if "PROXY_URL" in hooks else 0
    assert problem == (
        f"inv.yml:{line}: defaults.hooks.env_passthrough[{index}]: {name} cannot be passed "
        f"to hooks: it holds a secret ({why})"
    )
    group_level = inventory(DUMP, f"    hooks:\n  {hooks}", coordination=coordination)
    with pytest.raises(InventoryError, match=rf"groups\[0\]\.hooks\.env_passthrough.*{name}"):
        parse_inventory(group_level, "inv.yml")


def test_env_passthrough_refuses_the_tokens_variable_and_a_hooks_own_variable() -> None:
    """Probe 8: serve's --tokens-env variable (given by the caller) and HARESTART_NODE (set for
    each hook, so passing it through would be a lie) are refused at load."""
    text = inventory(DUMP + "    env_passthrough: [HARESTART_TOKENS, HARESTART_NODE]\n")
    with pytest.raises(InventoryError) as err:
        parse_inventory(
            text, "inv.yml", secret_env={"HARESTART_TOKENS": "serve --tokens-env names it"}
        )
    assert err.value.problems == [
        "inv.yml:6: defaults.hooks.env_passthrough[0]: HARESTART_TOKENS cannot be passed to "
        "hooks: it holds a secret (serve --tokens-env names it)",
        "inv.yml:6: defaults.hooks.env_passthrough[1]: HARESTART_NODE cannot be passed to "
        "hooks: harestart sets it for each hook itself",
    ]
    # Outside serve nothing says HARESTART_TOKENS holds a secret: only the hook's own refused.
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inv.yml")
    assert [p for p in err.value.problems if "HARESTART_TOKENS" in p] == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("PROXY_URL", "must be a list"),
        ("[12]", "env_passthrough[0]: must be a string (got 12)"),
        ("['A B']", "'A B' is not an environment variable name"),
    ],
)
def test_env_passthrough_is_a_list_of_variable_names(value: str, message: str) -> None:
    with pytest.raises(InventoryError, match=re.escape(message)):
        parse_inventory(inventory(DUMP + f"    env_passthrough: {value}\n"), "inv.yml")


def test_env_passthrough_layers_like_the_hooks_and_the_plan_names_it() -> None:
    """The group's list replaces the defaults' (``[]``: nothing more); the plan shows the names,
    never a value."""
    both = DUMP + "    env_passthrough: [PROXY_URL, PROXY_USER, PROXY_URL]\n"
    group = parse_inventory(inventory(both), "inv.yml").groups[0]
    assert group.hooks.env_passthrough == ("PROXY_URL", "PROXY_USER")
    plan = build_plan(group)
    assert (
        "do: hook before_node_restart: `env > env-$HARESTART_NODE` "
        "(timeout 60 s; passes PROXY_URL, PROXY_USER)" in render_text(plan)
    )
    action = json.loads(render_json([plan]))[0]["steps"][2]["actions"][0]
    assert action["env_passthrough"] == ["PROXY_URL", "PROXY_USER"]
    own = parse_inventory(inventory(both, "    hooks: {env_passthrough: []}\n"), "i").groups[0]
    assert own.hooks.env_passthrough == ()
    assert own.hooks.before_node_restart is not None  # the defaults' hook itself still holds
    assert "passes" not in render_text(build_plan(own))
    assert "env_passthrough" not in render_json([build_plan(own)])


def test_serve_reloads_refuse_the_tokens_variable_in_env_passthrough(tmp_path: Path) -> None:
    """Probe 8 through serve: an inventory edited to pass the tokens variable to hooks is not
    used (503 until fixed), like any inventory that no longer loads."""
    path = tmp_path / "inv.yml"
    path.write_text(inventory(DUMP))
    secret = {"API_TOKENS": "serve --tokens-env names it"}
    inv_file = InventoryFile(str(path), load_inventory(path, secret_env=secret), secret_env=secret)
    assert inv_file.current().groups[0].id == "lab"
    path.write_text(inventory(DUMP + "    env_passthrough: [API_TOKENS]\n") + "# edited\n")
    with capture_logs() as logs, pytest.raises(InventoryUnavailable, match="cannot be loaded"):
        inv_file.current()
    (event,) = [e for e in logs if e["event"] == "api.inventory.unavailable"]
    assert "env_passthrough[0]: API_TOKENS cannot be passed to hooks" in event["error"]


def test_cli_serve_refuses_its_tokens_variable_in_env_passthrough(tmp_path: Path) -> None:
    """Probe 8 at the door: `serve --tokens-env NAME` with NAME in env_passthrough exits 2
    before listening, one line naming file, line and field, no traceback, no token."""
    path = tmp_path / "inv.yml"
    path.write_text(inventory(DUMP + "    env_passthrough: [API_TOKENS]\n"))
    token = "tok-5be0d1c4-9a7f-44e2"
    proc = subprocess.run(
        [sys.executable, "-m", "harestart", "serve", str(path), "--port", "0",
         "--tokens-env", "API_TOKENS"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "API_TOKENS": f"{token}: '1'"},
    )  # fmt: skip
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert (
        f"{path}:6: defaults.hooks.env_passthrough[0]: API_TOKENS cannot be passed to hooks: "
        "it holds a secret (serve --tokens-env names it)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr and token not in proc.stderr + proc.stdout
