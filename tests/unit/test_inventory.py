"""Inventory validation: every problem at once, with file, line and field path."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harestart.domain.group import Health
from harestart.domain.secret import Secret
from harestart.errors import InventoryError, UsageError
from harestart.inventory import schema
from harestart.inventory.credentials import mysql_endpoint
from harestart.inventory.defaults import DEFAULTS, app_name, mha_defaults
from harestart.inventory.load import load_inventory, parse_inventory
from harestart.inventory.resolve import merge
from harestart.inventory.schema import SshSpec

REPO = Path(__file__).resolve().parents[2]

VALID = """\
defaults:
  ssh: {user: ops, sudo: true}
  mysql: {user: harestart, password_env: HS_TEST_PW}
groups:
  - id: g1
    account: "1"
    source: {name: db1, address: 10.0.0.1}
    replicas:
      - {name: db2, address: 10.0.0.2}
    mha:
      manager: {name: mha, address: 10.0.0.9}
      config: /etc/mha/app1.cnf
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(textwrap.dedent(text), "inv.yml")
    return info.value.problems


# (name, inventory text, a fragment every expected message contains, expected line or None)
MALFORMED = [
    ("empty file", "", "inv.yml: the file is empty", None),
    ("only a comment", "# nothing\n", "the file is empty", None),
    ("not yaml", "groups: [\n  - id: x\n", "not valid YAML", None),
    ("top level list", "- a\n- b\n", "the top level must be a mapping", 1),
    ("no groups", "defaults: {}\n", "groups: required but missing", None),
    ("empty groups", "groups: []\n", "at least one group", 1),
    (
        "missing id",
        VALID.replace("  - id: g1\n    account", "  - account"),
        "groups[0].id: required",
        5,
    ),
    (
        "duplicate id",
        VALID + VALID[VALID.index("  - id: g1") :].replace("db", "xb").replace("10.0.0", "10.1.0"),
        "duplicate group id 'g1'",
        13,
    ),
    (
        "no source",
        VALID.replace("    source: {name: db1, address: 10.0.0.1}\n", ""),
        "groups[0].source: required",
        None,
    ),
    (
        "no replicas key",
        VALID.replace("    replicas:\n      - {name: db2, address: 10.0.0.2}\n", ""),
        "groups[0].replicas: required",
        None,
    ),
    (
        "empty replicas",
        VALID.replace(
            "    replicas:\n      - {name: db2, address: 10.0.0.2}\n", "    replicas: []\n"
        ),
        "at least one replica",
        8,
    ),
    (
        "same host twice",
        VALID.replace("{name: db2, address: 10.0.0.2}", "{name: db1, address: 10.0.0.2}"),
        "host 'db1' is listed twice",
        9,
    ),
    ("same endpoint twice", VALID.replace("10.0.0.2", "10.0.0.1"), "SSH endpoint 10.0.0.1:22", 9),
    (
        "unknown key with hint",
        VALID.replace("  ssh: {user: ops, sudo: true}", "  ssh: {usr: ops, sudo: true}"),
        "unknown key 'usr' (did you mean 'user'?)",
        2,
    ),
    ("unknown top-level key", VALID + "grups: []\n", "unknown key 'grups'", 13),
    (
        "wrong type port",
        VALID.replace(
            "{name: db2, address: 10.0.0.2}",
            "{name: db2, address: 10.0.0.2, ssh: {port: twentytwo}}",
        ),
        'groups[0].replicas[0].ssh.port: must be an integer (got "twentytwo")',
        9,
    ),
    (
        "port out of range",
        VALID.replace(
            "{name: db2, address: 10.0.0.2}", "{name: db2, address: 10.0.0.2, mysql: {port: 70000}}"
        ),
        "groups[0].replicas[0].mysql.port: must be at most 65535 (got 70000)",
        9,
    ),
    (
        "bool type",
        VALID.replace("sudo: true", "sudo: sometimes"),
        'defaults.ssh.sudo: must be true or false (got "sometimes")',
        2,
    ),
    (
        "zero timeout",
        VALID.replace("defaults:\n", "defaults:\n  health: {restart_timeout: 0}\n"),
        "restart_timeout: must be positive",
        2,
    ),
    (
        "negative lag",
        VALID.replace("defaults:\n", "defaults:\n  health: {max_lag: -1}\n"),
        "max_lag: must be zero or more",
        2,
    ),
    (
        "injected hostname",
        VALID.replace("address: 10.0.0.2", "address: 'db2;rm -rf /'"),
        "is not a plain hostname",
        9,
    ),
    (
        "injected command",
        VALID.replace(
            "defaults:\n",
            "defaults:\n  restart_command: 'systemctl restart mysql; curl evil | sh'\n",
        ),
        "contains shell syntax",
        2,
    ),
    (
        "substitution in command",
        VALID.replace("defaults:\n", "defaults:\n  restart_command: 'service $(whoami) restart'\n"),
        "contains shell syntax",
        2,
    ),
    (
        "relative mha config",
        VALID.replace("config: /etc/mha/app1.cnf", "config: app1.cnf"),
        "is not a plain absolute path",
        12,
    ),
    (
        "python object tag",
        VALID.replace('account: "1"', "account: !!python/object/apply:os.system ['true']"),
        "unsupported YAML value",
        6,
    ),
    (
        "duplicate yaml key",
        VALID.replace('    account: "1"\n', '    account: "1"\n    account: "2"\n'),
        "duplicate key 'account'",
        7,
    ),
    (
        "bad env name",
        VALID.replace("password_env: HS_TEST_PW", "password_env: 'HS-TEST PW'"),
        "is not an environment variable name",
        3,
    ),
    ("unknown version", "version: 2\n" + VALID, "only inventory format version 1", 1),
    (
        "mha without manager",
        VALID.replace("      manager: {name: mha, address: 10.0.0.9}\n", ""),
        "groups[0].mha.manager: required",
        None,
    ),
    (
        "merge key",
        VALID.replace("defaults:\n", "defaults:\n  <<: {x: 1}\n"),
        "merge keys are not supported",
        2,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_inventory_is_reported_with_line_and_path(
    text: str, fragment: str, line: int | None
) -> None:
    found = problems(text)
    matching = [p for p in found if fragment in p]
    assert matching, f"no problem mentions {fragment!r}: {found}"
    if line is not None:
        assert any(p.startswith(f"inv.yml:{line}: ") for p in matching), matching


def test_there_are_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_every_problem_is_collected_in_one_pass() -> None:
    text = VALID.replace("sudo: true", "sudo: maybe").replace("address: 10.0.0.2", "address: 'a b'")
    text = text.replace("config: /etc/mha/app1.cnf", "config: rel.cnf") + "extra: 1\n"
    found = problems(text)
    assert len(found) == 4, found
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)


def test_alias_bomb_is_refused_quickly() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    bomb += "groups: *i\n"
    found = problems(bomb)
    assert any("alias bomb" in p for p in found), found


def test_valid_inventory_resolves_layers_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = parse_inventory(VALID, "inv.yml")
    (g,) = inv.groups
    assert g.id == "g1" and g.account == "1" and g.name == "g1"
    assert [n.name for n in g.db_nodes] == ["db1", "db2"]
    assert g.source.ssh.host == "10.0.0.1" and g.source.ssh.user == "ops" and g.source.ssh.sudo
    assert g.source.restart_command == "systemctl restart mysql"
    assert g.mha.stop_command == "masterha_stop --conf=/etc/mha/app1.cnf"
    assert g.mha.log == "/var/log/mha/app1/manager.log"
    assert g.health.max_lag == 5.0
    monkeypatch.setenv("HS_TEST_PW", "s3cret-value")
    ep = mysql_endpoint(g.replicas[0])
    assert ep.host == "10.0.0.2" and ep.port == 3306 and ep.user == "harestart"
    assert isinstance(ep.password, Secret) and ep.password.reveal() == "s3cret-value"
    assert "s3cret-value" not in repr(ep) and "s3cret-value" not in repr(g)


def test_unset_password_env_is_an_error_at_run_not_at_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HS_TEST_PW", raising=False)
    inv = parse_inventory(VALID, "inv.yml")  # plan-time loading succeeds
    with pytest.raises(UsageError, match="HS_TEST_PW is not set"):
        mysql_endpoint(inv.groups[0].source)


def test_inline_password_is_a_warning_and_never_rendered() -> None:
    text = VALID.replace("password_env: HS_TEST_PW", "password: 'inline-pw-123'")
    inv = parse_inventory(text, "inv.yml")
    assert any("password given inline" in w and "inv.yml:3:" in w for w in inv.warnings)
    assert "inline-pw-123" not in repr(inv)
    assert mysql_endpoint(inv.groups[0].source).password == Secret("inline-pw-123")


def test_node_overrides_group_overrides_defaults() -> None:
    text = VALID.replace(
        "    source: {name: db1, address: 10.0.0.1}",
        "    ssh: {user: grpuser, port: 2200}\n"
        "    source: {name: db1, address: 10.0.0.1, ssh: {port: 2201}, restart_command: service mariadb restart}",
    )
    g = parse_inventory(text, "inv.yml").groups[0]
    assert (g.source.ssh.user, g.source.ssh.port) == ("grpuser", 2201)
    assert (g.replicas[0].ssh.user, g.replicas[0].ssh.port) == ("grpuser", 2200)
    assert g.source.restart_command == "service mariadb restart"
    assert g.replicas[0].restart_command == "systemctl restart mysql"


def test_unknown_group_selection_suggests(tmp_path: Path) -> None:
    inv = parse_inventory(VALID, "inv.yml")
    with pytest.raises(UsageError, match=r"no group 'g2'.*groups: g1"):
        inv.select("g2")


def test_missing_file_is_an_inventory_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="file not found"):
        load_inventory(tmp_path / "nope.yml")


@pytest.mark.parametrize("name", ["lab.yml", "example.yml"])
def test_shipped_inventories_are_valid(name: str) -> None:
    inv = load_inventory(REPO / "inventories" / name)
    assert inv.groups and not inv.warnings


def test_example_uses_bastion_sudo_systemctl_two_groups() -> None:
    inv = load_inventory(REPO / "inventories" / "example.yml")
    assert len(inv.groups) == 2
    g = inv.groups[0]
    assert g.source.ssh.jump is not None and g.source.ssh.sudo
    assert g.source.restart_command == "systemctl restart mysql"
    assert inv.groups[1].source.restart_command == "systemctl restart mariadb"


def test_accepting_new_host_keys_reaches_every_endpoint_and_jump() -> None:
    text = VALID.replace("ssh: {user: ops, sudo: true}", "ssh: {user: ops, jump: {host: bastion}}")
    inv = parse_inventory(text, "inv.yml")
    assert not inv.groups[0].source.ssh.accept_new_host_keys
    accepted = inv.accepting_new_host_keys()
    g = accepted.groups[0]
    for node in (*g.db_nodes, g.mha.manager):
        assert node.ssh.accept_new_host_keys
        assert node.ssh.jump is not None and node.ssh.jump.accept_new_host_keys


# --- strict scalars: no coercion, and the message names the field and the value ---------------

SOURCE = "    source: {name: db1, address: 10.0.0.1}"

# (name, replaced line -> new text, the expected problem, exactly)
STRICT = [
    (
        "port true",
        (SOURCE, SOURCE[:-1] + ", ssh: {port: true}}"),
        "inv.yml:7: groups[0].source.ssh.port: must be an integer (got true)",
    ),
    (
        "port float",
        (SOURCE, SOURCE[:-1] + ", ssh: {port: 22.0}}"),
        "inv.yml:7: groups[0].source.ssh.port: must be an integer (got 22.0)",
    ),
    (
        "port string",
        (SOURCE, SOURCE[:-1] + ", mysql: {port: '3306'}}"),
        'inv.yml:7: groups[0].source.mysql.port: must be an integer (got "3306")',
    ),
    (
        "jump port string",
        ("ssh: {user: ops, sudo: true}", "ssh: {user: ops, jump: {host: b, port: '22'}}"),
        'inv.yml:2: defaults.ssh.jump.port: must be an integer (got "22")',
    ),
    (
        "duration string",
        ("password_env: HS_TEST_PW}", "password_env: HS_TEST_PW, connect_timeout: '5'}"),
        'inv.yml:3: defaults.mysql.connect_timeout: must be a number (got "5")',
    ),
    (
        "duration bool",
        ("ssh: {user: ops, sudo: true}", "ssh: {user: ops, command_timeout: true}"),
        "inv.yml:2: defaults.ssh.command_timeout: must be a number (got true)",
    ),
    (
        "duration infinite",
        ("defaults:\n", "defaults:\n  health: {catchup_timeout: .inf}\n"),
        "inv.yml:2: defaults.health.catchup_timeout: must be a finite number (got .inf)",
    ),
    (
        "lag string",
        ("defaults:\n", "defaults:\n  health: {max_lag: '5'}\n"),
        'inv.yml:2: defaults.health.max_lag: must be a number (got "5")',
    ),
    (
        "count float",
        ("defaults:\n", "defaults:\n  health: {min_healthy_replicas: 1.5}\n"),
        "inv.yml:2: defaults.health.min_healthy_replicas: must be an integer (got 1.5)",
    ),
    (
        "bool from integer",
        ("sudo: true", "sudo: 1"),
        "inv.yml:2: defaults.ssh.sudo: must be true or false (got 1)",
    ),
    (
        "bool from quoted string",
        ("sudo: true", "sudo: 'true'"),
        'inv.yml:2: defaults.ssh.sudo: must be true or false (got "true")',
    ),
    (
        "numeric account",
        ('account: "1"', "account: 5919009"),
        "inv.yml:6: groups[0].account: must be a string (got 5919009); quote it to mean text",
    ),
    (
        "numeric group id",
        ("- id: g1", "- id: 12"),
        "inv.yml:5: groups[0].id: must be a string (got 12); quote it to mean text",
    ),
    (
        "numeric node name",
        ("{name: db2, address: 10.0.0.2}", "{name: 2, address: 10.0.0.2}"),
        "inv.yml:9: groups[0].replicas[0].name: must be a string (got 2); quote it to mean text",
    ),
    (
        "section not a mapping",
        ("ssh: {user: ops, sudo: true}", "ssh: 5"),
        "inv.yml:2: defaults.ssh: must be a mapping (got 5)",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), [s[1:] for s in STRICT], ids=[s[0] for s in STRICT])
def test_strict_scalars_refuse_coercion_naming_field_and_value(
    edit: tuple[str, str], expected: str
) -> None:
    old, new = edit
    assert old in VALID
    assert problems(VALID.replace(old, new, 1)) == [expected]


def test_quoted_numeric_ids_and_yaml_booleans_are_accepted() -> None:
    text = VALID.replace("- id: g1", "- id: '12'").replace("sudo: true", "sudo: yes")
    g = parse_inventory(text, "inv.yml").groups[0]
    assert (g.id, g.account, g.source.ssh.sudo) == ("12", "1", True)


def test_wrong_type_password_is_not_echoed() -> None:
    text = VALID.replace("password_env: HS_TEST_PW", "password: 987654321")
    found = problems(text)
    assert found == ["inv.yml:3: defaults.mysql.password: must be a string; quote it to mean text"]


def test_integer_durations_are_numbers() -> None:
    text = VALID.replace("ssh: {user: ops, sudo: true}", "ssh: {connect_timeout: 3}")
    g = parse_inventory(text, "inv.yml").groups[0]
    assert g.source.ssh.connect_timeout == 3.0


def test_duplicate_hosts_are_reported_with_other_problems() -> None:
    text = VALID.replace("10.0.0.2", "10.0.0.1").replace("sudo: true", "sudo: maybe")
    found = problems(text)
    assert any("sudo: must be true or false" in p for p in found), found
    assert any("SSH endpoint 10.0.0.1:22 of 'db2'" in p for p in found), found


def test_duplicate_endpoints_use_the_layered_ports() -> None:
    # same address, different ports through the group layer: not a duplicate
    text = VALID.replace("10.0.0.2", "10.0.0.1").replace(
        "    replicas:\n      - {name: db2, address: 10.0.0.1}",
        "    replicas:\n      - {name: db2, address: 10.0.0.1, ssh: {port: 2222}, "
        "mysql: {port: 3307}}",
    )
    assert parse_inventory(text, "inv.yml").groups[0].replicas[0].ssh.port == 2222
    # the file's defaults set the port every node shares: a duplicate at that port
    shared = VALID.replace("10.0.0.2", "10.0.0.1").replace(
        "ssh: {user: ops, sudo: true}", "ssh: {user: ops, port: 2200}"
    )
    assert any("SSH endpoint 10.0.0.1:2200" in p for p in problems(shared))


# --- the one table of defaults ------------------------------------------------------------------

MINIMAL = """\
groups:
  - id: g1
    account: "1"
    source: {name: db1}
    replicas: [{name: db2}]
    mha: {manager: {name: mha}, config: /etc/mha/app1.cnf}
"""


def test_an_inventory_that_sets_nothing_gets_the_defaults_table() -> None:
    g = parse_inventory(MINIMAL, "inv.yml").groups[0]
    ssh = g.source.ssh
    assert (ssh.host, ssh.port, ssh.user, ssh.key_file, ssh.known_hosts, ssh.jump) == (
        "db1",
        22,
        "root",
        None,
        None,
        None,
    )
    assert (ssh.use_agent, ssh.sudo, ssh.accept_new_host_keys) == (False, False, False)
    assert (ssh.connect_timeout, ssh.command_timeout) == (10.0, 300.0)
    assert g.source.mysql is not None
    my = g.source.mysql
    assert (my.host, my.port, my.user, my.connect_timeout, my.tunnel) == (
        "db1",
        3306,
        "root",
        5.0,
        False,
    )
    assert g.source.restart_command == "systemctl restart mysql"
    assert g.health == Health(
        max_lag=5.0,
        restart_timeout=180.0,
        catchup_timeout=300.0,
        failover_timeout=60.0,
        min_healthy_replicas=1,
    )
    assert (g.mha.log, g.mha.stop_command, g.mha.status_command) == (
        "/var/log/mha/app1/manager.log",
        "masterha_stop --conf=/etc/mha/app1.cnf",
        "masterha_check_status --conf=/etc/mha/app1.cnf",
    )
    assert g.mha.start_command == "masterha_manager --conf=/etc/mha/app1.cnf --ignore_last_failover"
    assert mysql_endpoint(g.source).read_timeout == 30.0


def test_the_defaults_table_sets_every_value_it_owns() -> None:
    for section in (DEFAULTS.ssh, DEFAULTS.mysql, DEFAULTS.health):
        assert section is not None
        unset = {k for k, v in section.model_dump().items() if v is None}
        assert unset <= {
            "host",
            "key_file",
            "known_hosts",
            "jump",
            "password_env",
            "password_file",
            "password",
        }, unset
    assert DEFAULTS.restart_command


def test_mha_defaults_come_from_the_config_path() -> None:
    assert app_name("/etc/mha/app1.cnf") == "app1"
    assert app_name("/etc/mha/app1") == "app1"
    d = mha_defaults("/etc/mha/app 1.cnf")  # never valid in an inventory; still quoted
    assert d.log == "/var/log/mha/app 1/manager.log"
    assert d.stop_command == "masterha_stop '--conf=/etc/mha/app 1.cnf'"
    assert d.status_command == "masterha_check_status '--conf=/etc/mha/app 1.cnf'"
    assert d.start_command == "masterha_manager '--conf=/etc/mha/app 1.cnf' --ignore_last_failover"


def test_mha_commands_and_log_from_the_file_win() -> None:
    text = MINIMAL.replace(
        "config: /etc/mha/app1.cnf}",
        "config: /etc/mha/app1.cnf, log: /var/log/m.log, stop_command: mha-stop app1}",
    )
    m = parse_inventory(text, "inv.yml").groups[0].mha
    assert (m.log, m.stop_command) == ("/var/log/m.log", "mha-stop app1")
    assert m.status_command == "masterha_check_status --conf=/etc/mha/app1.cnf"


def test_jump_port_is_the_default_port_not_the_layered_one() -> None:
    text = MINIMAL.replace(
        "groups:\n", "defaults:\n  ssh: {port: 2200, user: ops, jump: {host: bastion}}\ngroups:\n"
    )
    ssh = parse_inventory(text, "inv.yml").groups[0].source.ssh
    assert ssh.port == 2200 and ssh.jump is not None
    assert (ssh.jump.host, ssh.jump.port, ssh.jump.user) == ("bastion", 22, "ops")


def test_merge_is_typed_and_takes_the_first_value_set() -> None:
    node = SshSpec(port=2201)
    group = SshSpec(port=2200, user="grp")
    merged = merge(node, None, group, DEFAULTS.ssh)
    assert isinstance(merged, SshSpec)
    assert (merged.port, merged.user, merged.sudo, merged.host) == (2201, "grp", False, None)


def test_duplicate_endpoints_are_layered_the_same_when_the_file_has_errors() -> None:
    shared = (
        VALID.replace("10.0.0.2", "10.0.0.1")
        .replace("ssh: {user: ops, sudo: true}", "ssh: {user: ops, port: 2200}")
        .replace("config: /etc/mha/app1.cnf", "config: rel.cnf")
    )
    found = problems(shared)
    assert any("is not a plain absolute path" in p for p in found), found
    assert any("SSH endpoint 10.0.0.1:2200 of 'db2'" in p for p in found), found
    assert any("MySQL endpoint 10.0.0.1:3306 of 'db2'" in p for p in found), found


def test_docs_inventory_example_is_valid() -> None:
    """The annotated example of the docs' inventory page (it was the README's) loads."""
    page = (REPO / "docs" / "reference" / "inventory.md").read_text(encoding="utf-8")
    block = page[page.index("```yaml") + len("```yaml") : page.index("```\n", 10)]
    g = parse_inventory(block, "docs/reference/inventory.md").groups[0]
    assert g.source.ssh.port == 2222 and g.source.ssh.jump is not None
    assert g.mha.log == "/var/log/mha/orders/manager.log"


# --- a fleet's shared settings, resolved once ------------------------------------------------

SHARING = """\
defaults:
  ssh: {user: ops, sudo: true}
  mysql: {user: harestart, password_env: HS_TEST_PW}
groups:
  - id: a
    account: "1"
    ssh: &custom {port: 2222}
    source: {name: a1, address: 10.0.0.1}
    replicas: [{name: a2, address: 10.0.0.2, ssh: {user: other}}]
    mha: {manager: {name: am, address: 10.0.0.9}, config: /etc/mha/a.cnf}
  - id: b
    account: "1"
    source: {name: b1, address: 10.0.1.1}
    replicas: [{name: b2}]
    mha: {manager: {name: bm, address: 10.0.1.9}, config: /etc/mha/a.cnf}
  - id: c
    account: "1"
    ssh: *custom
    health: {max_lag: 9}
    source: {name: c1, address: 10.0.2.1}
    replicas: [{name: c2, address: 10.0.2.2}]
    mha: {manager: {name: cm}, config: /etc/mha/c.cnf}
"""


def test_groups_resolved_from_shared_layers_keep_their_own_values() -> None:
    # Each distinct stack of sections is resolved once for the whole file; what one group or
    # node sets never reaches another, and every host keeps its own address.
    a, b, c = parse_inventory(SHARING, "inv.yml").groups
    assert [n.ssh.port for n in (*a.db_nodes, a.mha.manager)] == [2222, 2222, 2222]
    assert [n.ssh.port for n in (*b.db_nodes, b.mha.manager)] == [22, 22, 22]
    assert [n.ssh.port for n in (*c.db_nodes, c.mha.manager)] == [2222, 2222, 2222]
    assert [n.ssh.user for n in a.db_nodes] == ["ops", "other"]
    assert [n.ssh.user for n in (*b.db_nodes, *c.db_nodes)] == ["ops"] * 4
    hosts = [(n.ssh.host, n.mysql.host if n.mysql else None) for g in (a, b, c) for n in g.db_nodes]
    assert hosts == [
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.2", "10.0.0.2"),
        ("10.0.1.1", "10.0.1.1"),
        ("b2", "b2"),
        ("10.0.2.1", "10.0.2.1"),
        ("10.0.2.2", "10.0.2.2"),
    ]
    assert c.mha.manager.ssh.host == "cm" and c.mha.log == "/var/log/mha/c/manager.log"
    assert (a.health.max_lag, b.health.max_lag, c.health.max_lag) == (5.0, 5.0, 9.0)
    assert a.health == b.health and a.health != c.health


@given(
    st.lists(
        st.sampled_from(["0", "7", "10", "99", "100", "249", "255", "256", "01", "", "1000"]),
        min_size=3,
        max_size=5,
    )
)
def test_the_quick_ipv4_check_accepts_exactly_what_ipaddress_accepts(octets: list[str]) -> None:
    value = ".".join(octets)
    try:
        ipaddress.IPv4Address(value)
        valid = True
    except ValueError:
        valid = False
    assert bool(schema._IPV4.fullmatch(value)) is valid
