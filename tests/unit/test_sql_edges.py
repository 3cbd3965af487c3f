"""#21 probe 7 ("a string reaches SQL") and the issue's SQL paragraph, as hostile input.

No value is pasted into SQL text: the statement the adapter sends is rendered by the driver
(pymysql's ``mogrify``, exactly what ``cursor.execute`` sends) from ``Sql.text`` and its
values. Hosts and users are validated strictly when the inventory is loaded. The statements
here are captured at the driver without a server: a recording connection renders each one as
pymysql would send it, in both of the server's quoting modes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pymysql
import pymysql.cursors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql.constants import SERVER_STATUS

from harestart.adapters.mysql import MysqlSession, PyMysqlCommands
from harestart.domain.actions import REPLICATION_PASSWORD, RepointReplica, change_source
from harestart.domain.dialect import ReplicationSource, dialect_for, set_global
from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import PlanOptions
from harestart.domain.secret import Secret
from harestart.domain.sql import Sql, identifier, literal
from harestart.domain.switch import SourceStrategy
from harestart.errors import InventoryError
from harestart.inventory.load import parse_inventory
from harestart.views.plan import render_text

REPO = Path(__file__).resolve().parents[2]
PROBE7 = "fe80::1%x', MASTER_USER='root', MASTER_HOST='evil.example"
VERSIONS = {"mysql": "8.4.3", "mariadb": "10.11.6-MariaDB"}


# --- the driver, without a server ------------------------------------------------------------


class _Cursor:
    def __init__(self, conn: RecordingConnection) -> None:
        self.conn = conn

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str, args: Any = None) -> int:
        # pymysql's Cursor.execute sends exactly mogrify(query, args).
        self.conn.sent.append(pymysql.cursors.Cursor(self.conn.driver).mogrify(query, args))
        return 0

    def fetchall(self) -> list[dict[str, Any]]:
        return []


class RecordingConnection:
    """Stands for an open pymysql connection: records each statement as pymysql renders it
    for a server with (or without, ``no_backslash_escapes``) backslash escapes."""

    open = True

    _drivers: ClassVar[dict[bool, pymysql.connections.Connection[Any]]] = {}

    def __init__(self, no_backslash_escapes: bool = False) -> None:
        if no_backslash_escapes not in self._drivers:  # one each: making one takes ~0.1 s
            driver = pymysql.connections.Connection(defer_connect=True)
            nbe = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
            # read by pymysql's escape() (set by the handshake we never make)
            driver.server_status = nbe if no_backslash_escapes else 0  # type: ignore[attr-defined]
            self._drivers[no_backslash_escapes] = driver
        self.driver = self._drivers[no_backslash_escapes]
        self.sent: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def close(self) -> None:
        pass


DEFAULT_MODE = RecordingConnection()


def recording_probe(flavor: str, no_backslash_escapes: bool = False) -> MysqlSession:
    endpoint = MysqlEndpoint(
        host="127.0.0.1",
        port=3306,
        user="harestart",
        password=None,
        connect_timeout=5,
        read_timeout=5,
        tunnel=None,
    )
    session = MysqlSession("db1", endpoint)
    session._conn = RecordingConnection(no_backslash_escapes)  # type: ignore[assignment]
    session._dialect = dialect_for(VERSIONS[flavor])
    return session


def sent_by(session: MysqlSession) -> list[str]:
    conn: Any = session._conn
    sent: list[str] = conn.sent
    return sent


def send_change(session: MysqlSession, target: ReplicationSource, password: Secret) -> None:
    """What the RepointReplica performer sends: the plan's statement, its password filled."""
    statement = change_source(session.dialect(), target)
    PyMysqlCommands(session).execute(statement.fill({REPLICATION_PASSWORD: password}))


# --- reading a sent CHANGE statement back, as the server's lexer does ------------------------

_BACKSLASH = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_KEY = re.compile(r"([A-Z_]+)=")
_BARE = re.compile(r"[^,' ]+")


def _string(text: str, i: int, backslash: bool) -> tuple[str, int]:
    """The string literal starting at ``text[i] == "'"``: its value and the index after it."""
    out, i = [], i + 1
    while True:
        c = text[i]
        if backslash and c == "\\":
            nxt = text[i + 1]
            out.append("\\" + nxt if nxt in "%_" else _BACKSLASH.get(nxt, nxt))
            i += 2
        elif c == "'" and text[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        elif c == "'":
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1


def assignments(statement: str, backslash: bool = True) -> list[tuple[str, str]]:
    """``KEY=value`` pairs of a ``CHANGE MASTER TO`` / ``CHANGE REPLICATION SOURCE TO``."""
    head = re.match(r"CHANGE (?:MASTER|REPLICATION SOURCE) TO ", statement)
    assert head, statement
    out, i = [], head.end()
    while i < len(statement):
        key = _KEY.match(statement, i)
        assert key, statement[i:]
        i = key.end()
        if statement[i] == "'":
            value, i = _string(statement, i, backslash)
        else:
            bare = _BARE.match(statement, i)
            assert bare, statement[i:]
            value, i = bare.group(0), bare.end()
        out.append((key.group(1), value))
        if i < len(statement):
            assert statement.startswith(", ", i), statement[i:]
            i += 2
    return out


def expected(flavor: str, host: str, user: str, password: str) -> list[tuple[str, str]]:
    if flavor == "mariadb":
        return [
            ("MASTER_HOST", host),
            ("MASTER_PORT", "3306"),
            ("MASTER_USER", user),
            ("MASTER_PASSWORD", password),
            ("MASTER_USE_GTID", "slave_pos"),
        ]
    return [
        ("SOURCE_HOST", host),
        ("SOURCE_PORT", "3306"),
        ("SOURCE_USER", user),
        ("SOURCE_PASSWORD", password),
        ("SOURCE_AUTO_POSITION", "1"),
        ("GET_SOURCE_PUBLIC_KEY", "1"),
    ]


# --- inventories -----------------------------------------------------------------------------


def inventory(host: str, user: str = "repl") -> str:
    """A 1+2 group whose candidate db2 is reached for replication at ``host`` and whose
    replication account is ``user`` (both written as YAML double-quoted strings)."""
    return textwrap.dedent(f"""\
        defaults:
          mysql: {{user: harestart, password: pw-for-tests}}
          replication: {{user: {json.dumps(user)}, password_env: HS_REPL_PW}}
          source_strategy: switchover
        groups:
          - id: lab
            account: "1"
            candidate: db2
            source: {{name: db1, address: 10.0.0.1}}
            replicas:
              - name: db2
                address: 10.0.0.2
                replication_host: {json.dumps(host)}
              - {{name: db3, address: 10.0.0.3}}
            mha: {{manager: {{name: mha, address: 10.0.0.9}}, config: /etc/mha/app1.cnf}}
        """)


def repoints(host: str, user: str = "repl") -> list[RepointReplica]:
    group = parse_inventory(inventory(host, user), "inv.yml").groups[0]
    plan = build_plan(group, PlanOptions(source_strategy=SourceStrategy.SWITCHOVER))
    acts = [
        a
        for s in plan.steps
        for a in s.actions
        if isinstance(a, RepointReplica) and a.source == "db2"  # not the switch back to db1
    ]
    assert acts
    return acts


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harestart", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HARESTART_STATE_DIR": str(state), "HS_REPL_PW": "x"},
        timeout=60,
        check=False,
    )


# --- probe 7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "run"])
def test_probe7_host_is_refused_at_load_by_plan_and_run(command: str, tmp_path: Path) -> None:
    """Probe 7: today `plan` prints the zone id as three assignments; now the inventory is
    refused (exit 2, one line naming the file, line, group, node and field), nothing runs."""
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory(PROBE7))
    args = ["--yes"] if command == "run" else []
    r = cli(tmp_path / "state", command, str(inv), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "MASTER_HOST" not in r.stdout
    lines = [line for line in r.stderr.splitlines() if "replication_host" in line]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"  {inv}:13: groups[0].replicas[0].replication_host: "), lines
    assert "IPv6 zone id is letters, digits, '_', '.', '-' only" in lines[0]
    assert lines[0].endswith(" (group 'lab', node 'db2')"), lines
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.json"))


@pytest.mark.parametrize(
    "host",
    [
        PROBE7,
        "db1\n",  # `$` let a trailing newline through
        "db1'",
        "db1 --",
        "evil.example', MASTER_USER='root",
        "fe80::1%",
        "fe80::1%eth0 x",
        "fe80::1%eth0\n",
        "[fe80::1]",
        "10.0.0.256",
        "127.1",
        "1.2.3.4.5",
        "db_1",  # RFC 1123: no underscore
        "-db1",
        "db1-",
        "a..b",
        "a" * 64,
        ".".join(["a" * 63] * 4) + "x",
        "db1.123",
        "",
        "ｄｂ１",  # noqa: RUF001 - fullwidth letters are not ASCII letters
    ],
)
def test_hostile_hosts_are_refused_with_the_inventory_error(host: str) -> None:
    """Probe 7 and its neighbours: each refused at load, one message naming the field."""
    with pytest.raises(InventoryError) as info:
        parse_inventory(inventory(host), "inv.yml")
    (problem,) = info.value.problems
    assert "groups[0].replicas[0].replication_host" in problem and "\n" not in problem
    assert problem.endswith("(group 'lab', node 'db2')"), problem


@pytest.mark.parametrize(
    "user", ["repl'", "repl\n", "repl', MASTER_HOST='evil", "r" * 33, "1repl", "re pl", ""]
)
def test_hostile_users_are_refused_with_the_inventory_error(user: str) -> None:
    """The replication user reaches CHANGE MASTER TO too: a strict rule at load."""
    with pytest.raises(InventoryError) as info:
        parse_inventory(inventory("db2", user), "inv.yml")
    (problem,) = info.value.problems
    assert "defaults.replication.user" in problem and "\n" not in problem


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_a_zone_id_host_is_accepted_and_sent_exactly(flavor: str) -> None:
    """Probe 7's legitimate twin: `fe80::1%eth0` broke pymysql's %-formatting (TypeError) when
    pasted into the statement; now it is a parameter, sent and shown exactly."""
    host = "fe80::1%eth0"
    acts = repoints(host)
    group = parse_inventory(inventory(host), "inv.yml").groups[0]
    text = render_text(build_plan(group, PlanOptions(source_strategy=SourceStrategy.SWITCHOVER)))
    assert "SOURCE_HOST='fe80::1%eth0', SOURCE_PORT=3306" in text
    assert "MASTER_HOST='fe80::1%eth0', MASTER_PORT=3306" in text
    probe = recording_probe(flavor)
    send_change(probe, acts[0].target, Secret("pw%s'\\\""))
    (statement,) = sent_by(probe)
    assert assignments(statement) == expected(flavor, host, "repl", "pw%s'\\\"")


# --- properties ------------------------------------------------------------------------------

_LABEL = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True)
HOST_NAMES = (
    st.lists(_LABEL, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: len(h) <= 253 and not h.rsplit(".", 1)[-1].isdigit())
)
IPV6 = st.tuples(
    st.ip_addresses(v=6).map(str),
    st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_.-]+", fullmatch=True).map("%".__add__)),
).map("".join)
HOSTS = st.one_of(HOST_NAMES, st.ip_addresses(v=4).map(str), IPV6)
USERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", fullmatch=True)
PASSWORDS = st.text(min_size=1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.one_of(HOSTS, st.text(max_size=40)),
    user=st.one_of(USERS, st.text(max_size=40)),
    password=PASSWORDS,
    flavor=st.sampled_from(["mysql", "mariadb"]),
    no_backslash_escapes=st.booleans(),
)
def test_every_accepted_host_and_user_is_sent_as_exactly_that_literal(
    host: str, user: str, password: str, flavor: str, no_backslash_escapes: bool
) -> None:
    """SQL paragraph of #21: for every string the inventory accepts as a host or user, the
    statement the driver sends carries exactly that literal (parsed back as the server's
    lexer reads it, in either quoting mode), and the password too."""
    try:
        acts = repoints(host, user)
    except InventoryError:
        return  # refused: the next property
    for act in acts:
        probe = recording_probe(flavor, no_backslash_escapes)
        send_change(probe, act.target, Secret(password))
        (statement,) = sent_by(probe)
        got = assignments(statement, backslash=not no_backslash_escapes)
        assert got == expected(flavor, host, user, password)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=60), field=st.sampled_from(["host", "user"]))
def test_every_refused_host_or_user_is_refused_with_the_inventory_error(
    value: str, field: str
) -> None:
    """Any string at all as a host or user: accepted (and then a valid host or user), or
    refused with ``InventoryError``; never another exception (a traceback)."""
    text = inventory(value) if field == "host" else inventory("db2", value)
    try:
        group = parse_inventory(text, "inv.yml").groups[0]
    except InventoryError as exc:
        problems = exc.problems
    else:  # accepted: kept exactly as written
        kept = group.node("db2").replication_host if field == "host" else group.replication
        assert kept == value if field == "host" else getattr(kept, "user", None) == value
        return
    assert problems and all("\n" not in p for p in problems)


@settings(max_examples=300, deadline=None)
@given(value=st.text())
def test_literal_is_what_the_driver_sends_in_the_default_mode(value: str) -> None:
    """``literal``'s contract: a string is shown exactly as pymysql sends it (default
    sql_mode), so a plan's statement is the one sent, the password aside."""
    assert literal(value) == DEFAULT_MODE.driver.escape(value)


# --- Sql -------------------------------------------------------------------------------------


def test_sql_keeps_values_apart_and_never_shows_a_secret() -> None:
    secret = Secret("s3cr3t-value")
    sql = Sql("SELECT %s, %s, %s", ("it's", 7, secret))
    assert sql.shown() == "SELECT 'it\\'s', 7, '***'"
    assert sql.driver_args() == ("it's", 7, "s3cr3t-value")
    assert sql.logged_args() == ["it's", 7, "***"]
    assert "s3cr3t" not in repr(sql) and "s3cr3t" not in str(sql)


@pytest.mark.parametrize(
    ("text", "args"),
    [("SELECT %s", ()), ("SELECT 1", ("x",)), ("SELECT %d", (1,)), ("LIKE 'a%'", ())],
)
def test_sql_refuses_placeholders_that_do_not_match_its_values(
    text: str, args: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match=r"placeholders|% sign"):
        Sql(text, args)


def test_sql_refuses_values_that_are_not_sql_values() -> None:
    with pytest.raises(TypeError):
        Sql("SELECT %s", (True,))
    with pytest.raises(TypeError):
        Sql("SELECT %s", (None,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Sql("SELECT %s", (float("nan"),))


@pytest.mark.parametrize("name", ["read_only; DROP TABLE t", "a b", "x`", "", "é"])
def test_only_plain_identifiers_enter_a_statement(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        identifier(name)
    with pytest.raises(ValueError, match="identifier"):
        set_global(name, 0)


def test_the_plan_shows_the_statement_the_adapter_sends() -> None:
    """What is printed is what is sent: the plan's CHANGE statement is the adapter's, the
    password aside (shown '***')."""
    for flavor in ("mysql", "mariadb"):
        source = ReplicationSource("db2", 3306, "repl")
        probe = recording_probe(flavor)
        send_change(probe, source, Secret(""))
        (statement,) = sent_by(probe)
        shown = dialect_for(VERSIONS[flavor]).change_source(source, None).shown()
        assert statement.replace("_PASSWORD=''", "_PASSWORD='***'") == shown
