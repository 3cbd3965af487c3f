"""The GTID model (harestart/domain/gtid.py): MySQL sets with 8.3+ tags, MariaDB positions.

Properties over generated sets (round trip through text, subset laws, MySQL's set operations
against a brute-force model), examples, bad text, and the real MySQL 9.7 server's own
GTID_SUBSET / GTID_SUBTRACT answers on tagged sets (tests/data/gtid, captured from the lab).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harestart.domain.gtid import (
    GNO_MAX,
    Interval,
    MariadbGtid,
    MariadbGtidPos,
    MysqlGtidSet,
    Sid,
    gtid_covers,
    gtid_minus,
    parse_gtid,
)
from harestart.domain.switch import errant_gtids
from harestart.domain.topology import Flavor

DATA = Path(__file__).resolve().parent.parent / "data" / "gtid"
U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-11e1-9e33-c80aa9429563"
U3 = "a1b2c3d4-0000-11ef-8000-000000000001"
PROPERTY = settings(deadline=None)  # behaviour, not speed: no per-example time limit

# --- strategies ------------------------------------------------------------------------------

tags = st.one_of(
    st.sampled_from(["", "", "audit", "maint_2", "_"]),
    st.from_regex(r"[a-z_][a-z0-9_]{0,31}", fullmatch=True),
)
sids = st.builds(Sid, st.sampled_from([U1, U2, U3]), tags)
small = st.integers(min_value=1, max_value=40)
intervals = st.builds(lambda first, n: Interval(first, first + n), small, st.integers(0, 6))
mysql_sets = st.dictionaries(sids, st.lists(intervals, max_size=4), max_size=5).map(MysqlGtidSet.of)
huge = st.builds(
    lambda n: MysqlGtidSet.of({Sid(U1, "audit"): [(GNO_MAX - n, GNO_MAX)], Sid(U1): [(1, n)]}),
    st.integers(1, 10**6),
)
mariadb_gtids = st.builds(
    MariadbGtid, st.integers(0, 3), st.integers(1, 3), st.integers(0, 12) | st.just(2**64 - 1)
)
mariadb_positions = st.lists(mariadb_gtids, max_size=5).map(MariadbGtidPos.of)


def members(s: MysqlGtidSet) -> set[tuple[Sid, int]]:
    """Every transaction of a (small) set, one by one: the brute-force model."""
    return {
        (sid, n) for sid, ivs in s.streams for first, last in ivs for n in range(first, last + 1)
    }


def server_text(s: MysqlGtidSet) -> str:
    """As MySQL sends it: a newline after each comma, and upper-case UUIDs are accepted too."""
    return ",\n".join(p.replace(U2, U2.upper()) for p in s.parts())


# --- MySQL: properties -----------------------------------------------------------------------


@PROPERTY
@given(mysql_sets | huge)
def test_mysql_round_trip(x: MysqlGtidSet) -> None:
    assert MysqlGtidSet.parse(str(x)) == x
    assert MysqlGtidSet.parse(server_text(x)) == x
    assert str(MysqlGtidSet.parse(str(x))) == str(x)
    assert x.empty == (str(x) == "")


@PROPERTY
@given(mysql_sets, mysql_sets)
def test_mysql_subset_laws(x: MysqlGtidSet, y: MysqlGtidSet) -> None:
    assert x.covers(x)
    assert (x | y).covers(x) and (x | y).covers(y)
    assert x | y == y | x
    assert ((x - y) & y).empty
    assert x.covers(x - y)
    assert y.covers(x) == (x - y).empty
    assert (x - y) | (x & y) == x
    assert (x - x).empty


@settings(PROPERTY, max_examples=200)
@given(mysql_sets, mysql_sets)
def test_mysql_operations_match_sets_of_transactions(x: MysqlGtidSet, y: MysqlGtidSet) -> None:
    assert members(x - y) == members(x) - members(y)
    assert members(x | y) == members(x) | members(y)
    assert members(x & y) == members(x) & members(y)
    assert x.covers(y) == (members(y) <= members(x))


# --- MySQL: examples -------------------------------------------------------------------------


def test_the_issues_tagged_set_parses_and_prints_as_mysql_does() -> None:
    s = MysqlGtidSet.parse(f"{U1.upper()}:1-10:AUDIT:1")
    assert s.as_dict() == {Sid(U1): (Interval(1, 10),), Sid(U1, "audit"): (Interval(1, 1),)}
    assert str(s) == f"{U1}:1-10:audit:1"


def test_mysql_text_is_normalised() -> None:
    text = f"{U2}:maint:3:1-2, {U1}:7:1-5:6,\n{U2}:4-9:audit:1:maint:4-5,,"
    s = MysqlGtidSet.parse(text)
    # UUIDs sorted; per UUID untagged intervals first, then tags sorted; intervals merged.
    assert str(s) == f"{U1}:1-7,{U2}:4-9:audit:1:maint:1-5"
    assert s.parts() == (f"{U1}:1-7", f"{U2}:4-9:audit:1:maint:1-5")
    assert MysqlGtidSet.parse("") == MysqlGtidSet() and MysqlGtidSet.parse(" \n").empty
    assert str(MysqlGtidSet.parse(f"{U1}:audit:1-3")) == f"{U1}:audit:1-3"


@pytest.mark.parametrize(
    ("have", "want", "covered"),
    [
        (f"{U1}:1-27", f"{U1}:1-27", True),
        (f"{U1}:1-27", f"{U1}:1-28", False),
        (f"{U1}:1-10:11-27", f"{U1}:5-20", True),
        (f"{U1}:1-10:12-27", f"{U1}:5-20", False),
        (f"{U1}:1-27,{U2}:1-3", f"{U2}:2", True),
        (f"{U1}:1-27", f"{U2}:1", False),
        (f"{U1}:1-27", "", True),
        (f"{U1.upper()}:1-27", f"{U1}:3", True),
        (f"{U1}:1-10:audit:1", f"{U1}:audit:1", True),
        (f"{U1}:1-10:audit:1", f"{U1}:1-10:maint:1", False),
        (f"{U1}:1-10", f"{U1}:audit:1", False),  # a tag numbers its own transactions
        (f"{U1}:audit:1-10", f"{U1}:1", False),
    ],
)
def test_mysql_covers(have: str, want: str, covered: bool) -> None:
    assert MysqlGtidSet.parse(have).covers(MysqlGtidSet.parse(want)) is covered
    assert gtid_covers(Flavor.MYSQL, have, want) is covered


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0-1-42", "'0-1-42' is not a server UUID"),
        (f"{U1}", "a server UUID without transactions"),
        (f"{U1}:0", "interval '0' is not 1 <= first <= last"),
        (f"{U1}:5-3", "interval '5-3' is not 1 <= first <= last"),
        (f"{U1}:1-{2**63}", "is not 1 <= first <= last < 2^63"),
        (f"{U1}:1-10:audit", "tag 'audit' without transactions"),
        (f"{U1}:audit:maint:1", "tag 'audit' without transactions"),
        (f"{U1}:1:Bad-Tag:1", "'Bad-Tag' is neither an interval nor a tag"),
        (f"{U1}:1:9tag:1", "'9tag' is neither an interval nor a tag"),
        (f"{U1}:1:{'t' * 33}:1", "is neither an interval nor a tag"),
        (f"{U1}::1", "'' is neither an interval nor a tag"),
        ("3e11fa47-71ca-11e1-9e33:1", "is not a server UUID"),
    ],
)
def test_bad_mysql_text_is_named(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="not a MySQL GTID set") as err:
        MysqlGtidSet.parse(f"{U2}:1,{text}")
    assert says in str(err.value)
    assert repr(text) in str(err.value)  # the part it could not read


def test_sets_are_checked_when_built_by_hand() -> None:
    with pytest.raises(ValueError, match="not normalised"):
        MysqlGtidSet(((Sid(U1), (Interval(3, 4), Interval(1, 2))),))
    for bad in [(5, 4), (0, 4), (1, GNO_MAX + 1)]:
        with pytest.raises(ValueError, match="not 1 <= first <= last"):
            MysqlGtidSet.of({Sid(U1): [bad]})
    with pytest.raises(ValueError, match="not a lower-case server UUID"):
        MysqlGtidSet(((Sid(U1.upper()), (Interval(1, 2),)),))
    with pytest.raises(ValueError, match="not a lower-case GTID tag"):
        MysqlGtidSet.of({Sid(U1, "Audit"): [(1, 2)]})
    with pytest.raises(ValueError, match="not sorted"):
        MysqlGtidSet(((Sid(U2), (Interval(1, 2),)), (Sid(U1), (Interval(1, 2),))))
    assert MysqlGtidSet.of({Sid(U1): [], Sid(U2): [(4, 5), (1, 3)]}).streams == (
        (Sid(U2), (Interval(1, 5),)),
    )


def test_errant_gtids_with_tags() -> None:
    source = f"{U1}:1-100:audit:1-3"
    assert errant_gtids(f"{U1}:1-100:audit:1-3", source, Flavor.MYSQL) == ()
    assert errant_gtids(f"{U1}:1-90:audit:2", source, Flavor.MYSQL) == ()
    assert errant_gtids(f"{U1}:1-100:audit:1-4:fix:1,{U2}:x:1", source, Flavor.MYSQL) == (
        f"{U1}:audit:4:fix:1",
        f"{U2}:x:1",
    )
    # After a tag, intervals are the tag's: "audit:1:5-6" is audit 1, 5 and 6.
    assert gtid_minus(Flavor.MYSQL, f"{U1}:audit:1:5-6:1-3", f"{U1}:audit:2") == (
        MysqlGtidSet.parse(f"{U1}:audit:1:3:5-6")
    )


# --- the real server's answers (MySQL 9.7.4, tagged GTIDs) -----------------------------------

CAPTURED = json.loads((DATA / "mysql-9.7-tagged-answers.json").read_text())


@pytest.mark.parametrize(
    "answer", CAPTURED["answers"], ids=[f"{a['a']}-{a['b']}" for a in CAPTURED["answers"]]
)
def test_the_model_answers_as_mysql_97_does(answer: dict[str, str | int]) -> None:
    a = MysqlGtidSet.parse(CAPTURED["sets"][answer["a"]])
    b = MysqlGtidSet.parse(CAPTURED["sets"][answer["b"]])
    assert b.covers(a) is bool(answer["subset"])  # GTID_SUBSET(a, b)
    assert str(a - b) == str(answer["minus"]).replace("\n", "")  # GTID_SUBTRACT(a, b)


def test_captured_gtid_executed_round_trips() -> None:
    server = json.loads((DATA / "mysql-9.7-tagged-server.json").read_text())
    text = server["gtid_executed"]
    s = MysqlGtidSet.parse(text)
    assert str(s) == text and ":audit:1-2:maint_2:1" in text
    assert {sid.tag for sid, _ in s.streams} == {"", "audit", "maint_2"}
    assert {sid.uuid for sid, _ in s.streams} == {server["uuid"]}


# --- MariaDB: properties ---------------------------------------------------------------------


def diverged(x: MariadbGtidPos, y: MariadbGtidPos) -> bool:
    """A domain at the same sequence number in both, written by different servers."""
    held = y.as_dict()
    return any(
        g.domain in held and held[g.domain].seq == g.seq and held[g.domain] != g for g in x.gtids
    )


@PROPERTY
@given(mariadb_positions)
def test_mariadb_round_trip(x: MariadbGtidPos) -> None:
    assert MariadbGtidPos.parse(str(x)) == x
    assert MariadbGtidPos.parse(",\n ".join(reversed(x.parts()))) == x
    assert x.empty == (str(x) == "")


@PROPERTY
@given(mariadb_positions, mariadb_positions)
def test_mariadb_subset_laws(x: MariadbGtidPos, y: MariadbGtidPos) -> None:
    assert x.covers(x)
    assert (x | y).covers(x) and (x | y).covers(y)
    assert x | y == y | x
    assert x.covers(x - y)
    assert (x - y) - y == x - y  # nothing left that y accounts for
    assert (x - x).empty
    # Empty difference: y covers x, and no domain diverged (same seq, another server).
    assert (x - y).empty == (y.covers(x) and not diverged(x, y))


# --- MariaDB: examples -----------------------------------------------------------------------


def test_parse_mariadb_position() -> None:
    assert MariadbGtidPos.parse("1-2-7,0-1-42").as_dict() == {
        0: MariadbGtid(0, 1, 42),
        1: MariadbGtid(1, 2, 7),
    }
    assert str(MariadbGtidPos.parse(" 1-2-7,\n0-1-42 ")) == "0-1-42,1-2-7"
    assert MariadbGtidPos.parse("").empty
    assert str(MariadbGtidPos.parse("0-1-42,0-2-40")) == "0-1-42"  # the furthest per domain


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"{U1}:1-5", "is not domain-server-seq"),
        ("0-1", "'0-1' is not domain-server-seq"),
        ("0-1--2", "is not domain-server-seq"),
        (f"0-{2**32}-1", "domain or server id out of range"),
        (f"0-1-{2**64}", "sequence number out of range"),
    ],
)
def test_bad_mariadb_text_is_named(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="not a MariaDB GTID position") as err:
        MariadbGtidPos.parse(f"1-1-1,{text}")
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("have", "want", "covered"),
    [
        ("0-1-42", "0-1-42", True),
        ("0-1-43", "0-1-42", True),
        ("0-1-41", "0-1-42", False),
        ("0-2-50", "0-1-42", True),  # seq grows per domain whichever server wrote it
        ("0-1-42", "0-1-42,1-2-7", False),  # a domain the replica has never seen
        ("0-1-42,1-2-9", "0-1-42,1-2-7", True),
        ("0-1-42", "", True),
        ("", "0-1-1", False),
    ],
)
def test_mariadb_covers(have: str, want: str, covered: bool) -> None:
    assert MariadbGtidPos.parse(have).covers(MariadbGtidPos.parse(want)) is covered
    assert gtid_covers(Flavor.MARIADB, have, want) is covered


def test_parse_gtid_picks_the_flavours_model() -> None:
    assert isinstance(parse_gtid(Flavor.MARIADB, "0-1-2"), MariadbGtidPos)
    assert isinstance(parse_gtid(Flavor.MYSQL, f"{U1}:1"), MysqlGtidSet)
    with pytest.raises(ValueError, match="not a MySQL GTID set"):
        parse_gtid(Flavor.MYSQL, "0-1-2")
