"""Pending restarts, pure (#23): values normalised as mysqld reads them, the configuration it
would start with, and the judge, on captured output of the real lab servers
(tests/data/pending, ``python -m tests.data.pending.capture``) and on small cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harestart.domain.pending import (
    HostFacts,
    ReasonKind,
    ServerSettings,
    judge_pending,
    parse_host_facts,
    parse_settings,
    settings_statements,
)
from harestart.domain.pending.mysql_static import mysql_read_only
from harestart.domain.pending.options import COMMAND_LINE, FILE, effective_settings
from harestart.domain.pending.settings import (
    MARIADB_VARIABLES,
    MYSQL_PERSISTED,
    MYSQL_VARIABLES,
    MYSQL_VARIABLES_BEFORE_8_3,
)
from harestart.domain.pending.values import (
    VarType,
    normal_path,
    parse_bool,
    parse_size,
    same_value,
)
from harestart.domain.topology import Flavor, flavor_from_version, version_tuple

DATA = Path(__file__).resolve().parents[1] / "data" / "pending"
FLAVORS = ("mariadb", "mysql")


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1G", 1073741824),
        ("1g", 1073741824),
        ("64M", 67108864),
        ("8k", 8192),
        ("2T", 2 * 1024**4),
        ("100", 100),
        (" 16M ", 16777216),
        ("-1", -1),
    ],
)
def test_sizes_read_as_mysqld_reads_them(text: str, number: int) -> None:
    assert parse_size(text) == number


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("kKmMgGtTpPeE"))
def test_a_suffix_is_a_power_of_1024(n: int, suffix: str) -> None:
    power = "kmgtpe".index(suffix.lower()) + 1
    assert parse_size(f"{n}{suffix}") == n * 1024**power
    assert same_value(f"{n}{suffix}", str(n * 1024**power), VarType.INT)


@pytest.mark.parametrize("text", ["1.5G", "1GB", "M", "", "ten", "0x10"])
def test_not_a_size(text: str) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("ON", True), ("on", True), ("TRUE", True), ("1", True), ("Yes", True)],
        *[("OFF", False), ("false", False), ("0", False), ("NO", False)],
        *[("2", None), ("", None)],
    ],
)
def test_booleans(text: str, value: bool | None) -> None:
    assert parse_bool(text) is value


@given(st.sampled_from(["ON", "TRUE", "YES", "1"]), st.booleans())
def test_any_spelling_of_true_is_on(word: str, lower: bool) -> None:
    text = word.lower() if lower else word
    assert same_value(text, "ON", VarType.BOOL)
    assert not same_value(text, "OFF", VarType.BOOL)
    assert same_value(text, "ON", VarType.UNKNOWN)


@pytest.mark.parametrize(
    ("configured", "running", "kind"),
    [
        ("10", "10.000000", VarType.NUMERIC),  # MariaDB's expire_logs_days
        ("row", "ROW", VarType.ENUM),
        ("1", "ON", VarType.ENUM),
        ("STRICT_TRANS_TABLES,NO_ZERO_DATE", "NO_ZERO_DATE,STRICT_TRANS_TABLES", VarType.SET),
        ("/usr", "/usr/", VarType.STRING),  # basedir
        ("/var/lib/mysql", "/var/lib/mysql/", VarType.STRING),  # datadir
        ("./mysql-bin", "/var/lib/mysql/mysql-bin", VarType.STRING),
        ("utf8mb4", "UTF8MB4", VarType.STRING),
        ("64M", "67108864", VarType.UNKNOWN),
        ("/var/lib/mysql-files", "/var/lib/mysql-files/", VarType.UNKNOWN),
    ],
)
def test_the_same_value_spelt_otherwise(configured: str, running: str, kind: VarType) -> None:
    assert same_value(configured, running, kind, datadir="/var/lib/mysql/")


@pytest.mark.parametrize(
    ("configured", "running", "kind"),
    [
        ("32M", "16777216", VarType.INT),
        ("0", "ON", VarType.BOOL),
        ("MIXED", "ROW", VarType.ENUM),
        ("/var/log/mysql/other.log", "/var/log/mysql/error.log", VarType.STRING),
        ("/Data", "/data", VarType.STRING),  # case matters in a path
        ("2", "4", VarType.UNKNOWN),
    ],
)
def test_different_values(configured: str, running: str, kind: VarType) -> None:
    assert not same_value(configured, running, kind, datadir="/var/lib/mysql/")


def test_paths_collapse_slashes_and_dots() -> None:
    assert normal_path("/var//lib/./mysql/") == "/var/lib/mysql"
    assert normal_path("binlog/x", "/data/") == "/data/binlog/x"


# --- the configuration mysqld would start with ----------------------------------------------


VARIABLES = {
    "log_bin",
    "log_bin_basename",
    "skip_name_resolve",
    "performance_schema",
    "key_buffer_size",
    "log_replica_updates",
    "source_verify_checksum",
    "max_connections",
    "innodb_buffer_pool_size",
    "general_log",
}


def settings_of(options: list[str], command_line: tuple[str, ...] = ()) -> dict[str, object]:
    got = effective_settings(options, command_line, VARIABLES)
    return {name: (s.value, s.origin) for name, s in got.items()}


def test_dashes_and_underscores_are_one_name_and_the_last_setting_wins() -> None:
    got = settings_of(["--max-connections=100", "--max_connections=150"])
    assert got == {"max_connections": ("150", FILE)}


def test_the_command_line_wins_over_the_option_files() -> None:
    got = settings_of(["--max_connections=150"], ("--max-connections=200", "--daemonize"))
    assert got == {"max_connections": ("200", COMMAND_LINE)}


def test_prefixes_mysqld_accepts() -> None:
    got = settings_of(
        [
            "--loose-max-connections=10",
            "--skip-performance-schema",
            "--enable-general-log",
            "--disable-skip-name-resolve",
            "--maximum-max-connections=99",  # a session ceiling: never compared
        ]
    )
    assert got == {
        "max_connections": ("10", FILE),
        "performance_schema": ("OFF", FILE),
        "general_log": ("ON", FILE),
        "skip_name_resolve": ("OFF", FILE),
    }


def test_a_variable_named_skip_is_itself() -> None:
    assert settings_of(["--skip_name_resolve=1"]) == {"skip_name_resolve": ("1", FILE)}
    assert settings_of(["--skip-name-resolve"]) == {"skip_name_resolve": (None, FILE)}


def test_log_bin_names_the_base_name() -> None:
    got = settings_of(["--log-bin=/var/lib/mysql/mysql-bin.log"])
    assert got == {
        "log_bin": ("ON", FILE),
        "log_bin_basename": ("/var/lib/mysql/mysql-bin", FILE),
    }
    assert settings_of(["--log_bin=binlog"])["log_bin_basename"] == ("./binlog", FILE)
    assert settings_of(["--log-bin"]) == {"log_bin": ("ON", FILE)}
    assert settings_of(["--skip-log-bin"]) == {"log_bin": ("OFF", FILE)}


def test_old_names_reach_the_variables_the_server_has() -> None:
    got = settings_of(["--log-slave-updates", "--master-verify-checksum=ON", "--key_buffer=8M"])
    assert got == {
        "log_replica_updates": (None, FILE),
        "source_verify_checksum": ("ON", FILE),
        "key_buffer_size": ("8M", FILE),
    }


def test_options_that_are_no_variable_are_not_compared() -> None:
    options = [
        "--user=mysql",
        "--plugin-load-add=auth_socket.so",
        "--defaults-file=/etc/x.cnf",
        "--mysqlx=OFF",
        "--key_buf=8M",  # a unique prefix MariaDB would take: not resolved
        "-u",
        "mysql",
        "garbage",
    ]
    assert settings_of(options) == {}


# --- what the server says ---------------------------------------------------------------------


def test_each_source_of_truth_is_one_statement() -> None:
    assert settings_statements(Flavor.MARIADB, (10, 11, 6)) == (MARIADB_VARIABLES,)
    assert settings_statements(Flavor.MYSQL, (9, 7, 4)) == (MYSQL_VARIABLES, MYSQL_PERSISTED)
    assert settings_statements(Flavor.MYSQL, (8, 0, 36)) == (
        MYSQL_VARIABLES_BEFORE_8_3,
        MYSQL_PERSISTED,
    )


def test_mysql_8_0_rows_of_show_global_variables() -> None:
    rows = [{"Variable_name": "innodb_log_file_size", "Value": "50331648"}]
    settings = parse_settings(Flavor.MYSQL, (8, 0, 36), [rows, []])
    var = settings.variables["innodb_log_file_size"]
    assert (var.value, var.read_only, var.type) == ("50331648", True, VarType.UNKNOWN)
    # gone in 9.x: the 8.0 list does not apply
    assert not mysql_read_only("innodb_log_file_size", (9, 7, 4))


def captured(flavor: str) -> tuple[ServerSettings, str]:
    doc = json.loads((DATA / f"{flavor}-variables.json").read_text())
    version = doc["version"]
    fl, numbers = flavor_from_version(version), version_tuple(version)
    return parse_settings(fl, numbers, doc["results"]), version


def host(flavor: str, name: str) -> HostFacts:
    return parse_host_facts((DATA / f"{flavor}-host-{name}.txt").read_text())


def test_what_the_real_servers_say_about_their_variables() -> None:
    mariadb, _ = captured("mariadb")
    assert mariadb.persisted is None
    assert mariadb.variables["bind_address"].read_only  # READ_ONLY = YES
    assert not mariadb.variables["max_connections"].read_only
    assert mariadb.variables["performance_schema"].type is VarType.BOOL
    assert mariadb.pid_file == "/run/mysqld/mysqld.pid"
    mysql, _ = captured("mysql")
    assert mysql.persisted == {}
    assert mysql.persisted_loaded
    assert mysql.variables["bind_address"].read_only  # from harestart's table
    assert not mysql.variables["max_connections"].read_only
    assert mysql.variables["innodb_buffer_pool_size"].type is VarType.INT


# --- the judge --------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_fresh_lab_server_needs_nothing(flavor: str) -> None:
    """The false-positive check on the real servers' full variable lists and the lab's own
    option files (as my_print_defaults printed them) and mysqld command lines."""
    settings, version = captured(flavor)
    facts = host(flavor, "fresh")
    assert facts.options and facts.libraries and facts.package is not None
    report = judge_pending(settings, facts, running_version=version)
    assert report.pending_restart == ()
    assert report.config_drift == ()
    assert report.describe() == "nothing pending"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_replaced_binary_and_library(flavor: str) -> None:
    settings, version = captured(flavor)
    # captured on the replica (the variables are the source's): its host facts only
    facts = dataclasses.replace(host(flavor, "replaced"), options=())
    report = judge_pending(settings, facts, running_version=version)
    kinds = {(r.kind, r.subject) for r in report.pending_restart}
    binary = "/usr/sbin/mariadbd" if flavor == "mariadb" else "/usr/sbin/mysqld"
    assert kinds == {
        (ReasonKind.BINARY, binary),
        (ReasonKind.LIBRARY, "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
    }
    assert "was deleted or replaced on disk" in report.pending_restart[0].text


@pytest.mark.parametrize("flavor", FLAVORS)
def test_no_proc_access_is_unknown_not_nothing(flavor: str) -> None:
    settings, version = captured(flavor)
    facts = host(flavor, "not-root")
    assert facts.user == "ops"
    report = judge_pending(settings, facts, running_version=version)
    unknown = [r for r in report.pending_restart if r.kind is ReasonKind.UNKNOWN]
    assert [r.subject for r in unknown] == [f"/proc/{facts.pid}/exe", f"/proc/{facts.pid}/maps"]
    assert "as ops: " in unknown[0].text and "Permission denied" in unknown[0].text
    assert "ssh sudo" in unknown[0].text
    assert report.pending and report.unknown
    assert report.config_drift == ()  # the option files were still read


def with_options(flavor: str, *lines: str, name: str = "fresh") -> HostFacts:
    text = (DATA / f"{flavor}-host-{name}.txt").read_text()
    return parse_host_facts(text + "".join(f"opt\t{line}\n" for line in lines))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_read_only_variable_changed_in_the_file_is_pending(flavor: str) -> None:
    settings, version = captured(flavor)
    facts = with_options(flavor, "--table-open-cache-instances=2")
    report = judge_pending(settings, facts, running_version=version)
    (reason,) = report.pending_restart
    assert (reason.kind, reason.subject, reason.configured) == (
        ReasonKind.CONFIG,
        "table_open_cache_instances",
        "2",
    )
    assert reason.running == settings.value("table_open_cache_instances")
    assert "the option file says 2" in reason.text
    assert "changes only at a restart" in reason.text
    assert report.config_drift == ()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_dynamic_variable_changed_in_the_file_is_drift(flavor: str) -> None:
    settings, version = captured(flavor)
    facts = with_options(flavor, "--max_connections=150", "--innodb_buffer_pool_size=1G")
    report = judge_pending(settings, facts, running_version=version)
    assert report.pending_restart == ()
    assert sorted((r.subject, r.configured, r.running) for r in report.config_drift) == [
        ("innodb_buffer_pool_size", "1G", "67108864"),
        ("max_connections", "150", "100"),
    ]
    assert all(
        "set at run time, differs from the option file" in r.text for r in report.config_drift
    )


def test_mysql_persisted_values() -> None:
    settings, version = captured("mysql")
    rows = [
        {"name": "table_open_cache_instances", "value": "8"},  # PERSIST_ONLY, read-only
        {"name": "max_allowed_packet", "value": "1048576"},  # PERSIST_ONLY, dynamic
        {"name": "max_connections", "value": "100"},  # SET PERSIST: as it runs
        {"name": "report_password", "value": "s3cret"},
    ]
    persisted = parse_settings(settings.flavor, settings.version, [_rows(settings), rows])
    # the file says another max_connections: the persisted value is the one mysqld starts with
    facts = with_options("mysql", "--max_connections=150")
    report = judge_pending(persisted, facts, running_version=version)
    assert [(r.kind, r.subject) for r in report.pending_restart] == [
        (ReasonKind.PERSISTED, "table_open_cache_instances"),
        (ReasonKind.PERSISTED, "report_password"),
    ]
    assert [(r.kind, r.subject) for r in report.config_drift] == [
        (ReasonKind.PERSISTED, "max_allowed_packet")
    ]
    secret = report.pending_restart[1]
    assert (secret.configured, secret.running) == ("***", "***")
    assert "s3cret" not in json.dumps([r.to_dict() for r in report.pending_restart])


def test_persisted_values_mysqld_does_not_load_are_not_compared() -> None:
    settings, version = captured("mysql")
    rows = _rows(settings)
    for row in rows:
        if row["name"] == "persisted_globals_load":
            row["value"] = "OFF"
    off = parse_settings(
        settings.flavor,
        settings.version,
        [rows, [{"name": "table_open_cache_instances", "value": "8"}]],
    )
    assert judge_pending(off, host("mysql", "fresh"), running_version=version).pending_restart == ()


def _rows(settings: ServerSettings) -> list[dict[str, object]]:
    return [
        {"name": v.name, "value": v.value, "type": v.type.value.capitalize()}
        for v in settings.variables.values()
    ]


def test_values_mysqld_adjusts_at_start_are_not_drift() -> None:
    settings, version = captured("mysql")
    # chunk 128M? the lab's pool is 64M in chunks of its own size: 100M rounds up to 128M
    rows = _rows(settings)
    for row in rows:
        if row["name"] == "innodb_buffer_pool_size":
            row["value"] = str(128 * 1024**2)
        if row["name"] == "innodb_buffer_pool_chunk_size":
            row["value"] = str(128 * 1024**2)
    rounded = parse_settings(settings.flavor, settings.version, [rows, []])
    facts = with_options("mysql", "--innodb_buffer_pool_size=100M", "--open_files_limit=5000")
    report = judge_pending(rounded, facts, running_version=version)
    assert report.pending_restart == () and report.config_drift == ()


def test_a_bare_flag_means_on_for_a_boolean() -> None:
    settings, version = captured("mariadb")
    report = judge_pending(
        settings,
        with_options("mariadb", "--skip-name-resolve", "--general-log"),
        running_version=version,
    )
    assert [r.subject for r in report.config_drift] == ["general_log"]  # runs OFF
    assert report.pending_restart == ()  # skip_name_resolve runs ON


def test_the_package_version_against_the_running_one() -> None:
    settings, _ = captured("mariadb")
    facts = host("mariadb", "fresh")
    assert facts.package == ("mariadb-server-core", "1:10.11.19-0+deb12u1")
    same = judge_pending(settings, facts, running_version="10.11.19-MariaDB-0+deb12u1-log")
    assert same.pending_restart == ()
    older = judge_pending(settings, facts, running_version="10.11.14-MariaDB-0+deb12u1-log")
    (reason,) = older.pending_restart
    assert (reason.kind, reason.subject) == (ReasonKind.PACKAGE, "mariadb-server-core")
    assert "is 1:10.11.19-0+deb12u1, mysqld runs 10.11.14" in reason.text


def test_what_could_not_be_read_is_unknown() -> None:
    settings, version = captured("mariadb")
    text = (DATA / "mariadb-host-fresh.txt").read_text()
    facts = parse_host_facts(
        text
        + "unreadable\t/etc/mysql/conf.d/secret.cnf\n"
        + "opt\tmy_print_defaults: [ERROR] Stopped processing the 'includedir' directive\n"
    )
    report = judge_pending(settings, facts, running_version=version)
    assert [r.kind for r in report.pending_restart] == [ReasonKind.UNKNOWN] * 2
    assert "option file /etc/mysql/conf.d/secret.cnf is not readable by root" in report.describe()
    failed = parse_host_facts(
        "user\troot\npid!\tno mariadbd or mysqld process (pid file /x)\n"
        "opt!\tmy_print_defaults exited 127: sh: 1: my_print_defaults: not found\n"
    )
    texts = [r.text for r in judge_pending(settings, failed).pending_restart]
    assert texts == [
        "cannot find mysqld on the host: no mariadbd or mysqld process (pid file /x)",
        "cannot read the option files: my_print_defaults exited 127: sh: 1: my_print_defaults: not found",
    ]


def test_nothing_read_is_unknown_too() -> None:
    assert [
        r.text
        for r in judge_pending(
            None, None, host_error="timed out", settings_error="(1142) denied"
        ).pending_restart
    ] == [
        "cannot check the host: timed out",
        "cannot read the server's variables: (1142) denied",
    ]
    settings, _ = captured("mysql")
    (reason,) = judge_pending(settings, parse_host_facts("")).pending_restart
    assert reason.text == "the detection command printed nothing harestart understands"
    empty = ServerSettings(Flavor.MYSQL, (9, 7, 4))
    texts = [r.text for r in judge_pending(empty, host("mysql", "fresh")).pending_restart]
    assert texts == ["the server listed no global variables"]


def respelt(value: str, kind: VarType) -> str:
    """The same value as another option file could write it."""
    size = parse_size(value)
    if kind is VarType.INT and size is not None and size > 0 and size % 1024 == 0:
        return f"{size // 1024}K"
    if kind is VarType.BOOL and parse_bool(value) is not None:
        return "1" if parse_bool(value) else "off"
    if value.startswith("/") and not value.endswith("/"):
        return value + "/"
    return value.lower() if kind in (VarType.ENUM, VarType.SET) else value


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("spelling", ["as it runs", "respelt"])
def test_every_real_variable_configured_as_it_runs_is_no_difference(
    flavor: str, spelling: str
) -> None:
    """The whole variable list of a real server, each written into the option file with the
    value it runs with (or another spelling of it): nothing pending, no drift."""
    settings, version = captured(flavor)
    lines = [
        f"--{v.name.replace('_', '-')}={v.value if spelling == 'as it runs' else respelt(v.value, v.type)}"
        for v in settings.variables.values()
        if "\n" not in v.value
    ]
    assert len(lines) > 500
    report = judge_pending(settings, with_options(flavor, *lines), running_version=version)
    assert report.pending_restart == ()
    assert report.config_drift == ()
