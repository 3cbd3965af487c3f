"""Each server's own SQL, chosen from the version string alone."""

from __future__ import annotations

import pytest

from harestart.domain.dialect import dialect_for
from harestart.domain.topology import Flavor, ReadOnlyState


@pytest.mark.parametrize(
    ("version", "flavor", "word", "super_ro"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", Flavor.MARIADB, "SLAVE", False),
        ("5.5.5-10.6.1-MariaDB", Flavor.MARIADB, "SLAVE", False),
        ("11.8.2-MariaDB", Flavor.MARIADB, "SLAVE", False),
        ("9.7.4-2", Flavor.MYSQL, "REPLICA", True),  # Debian sid's Oracle MySQL 9.7 LTS
        ("8.4.3", Flavor.MYSQL, "REPLICA", True),
        ("8.0.36-log", Flavor.MYSQL, "REPLICA", True),
        ("8.0.21", Flavor.MYSQL, "SLAVE", True),
        ("5.7.44-log", Flavor.MYSQL, "SLAVE", True),
        ("5.7.7", Flavor.MYSQL, "SLAVE", False),
    ],
)
def test_the_version_decides_the_words(
    version: str, flavor: Flavor, word: str, super_ro: bool
) -> None:
    d = dialect_for(version)
    assert d.flavor is flavor and d.replica_word == word and d.has_super_read_only is super_ro
    assert d.show_replica_status == f"SHOW {word} STATUS"
    assert (d.stop_io_thread, d.start_io_thread) == (
        f"STOP {word} IO_THREAD",
        f"START {word} IO_THREAD",
    )


def test_mysql_84_and_later_never_get_a_removed_statement() -> None:
    for version in ("8.4.0", "9.0.1", "9.7.4-2"):
        d = dialect_for(version)
        statements = [d.show_replica_status, d.stop_io_thread, d.start_io_thread, d.start_replica]
        assert not any("SLAVE" in s or "MASTER" in s for s in statements), version
        assert "WAIT_FOR_EXECUTED_GTID_SET" in d.wait_for_gtid("x", 1).text
        assert "gtid_executed" in d.gtid_position_query


def test_mariadb_speaks_its_own_gtid() -> None:
    d = dialect_for("10.11.19-MariaDB")
    assert "MASTER_GTID_WAIT" in d.wait_for_gtid("x", 1).text
    assert "gtid_binlog_pos" in d.gtid_position_query
    assert "super_read_only" not in d.read_only_query


def test_an_unknown_version_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="unrecognised server version"):
        dialect_for("unknown")


@pytest.mark.parametrize(
    ("state", "statements"),
    [
        (ReadOnlyState(False, False), ("SET GLOBAL read_only = OFF",)),
        (
            ReadOnlyState(True, True),
            ("SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = ON"),
        ),
        (
            ReadOnlyState(True, False),
            ("SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = OFF"),
        ),
        (ReadOnlyState(True, None), ("SET GLOBAL read_only = ON",)),
    ],
)
def test_read_only_statements_leave_exactly_the_wanted_state(
    state: ReadOnlyState, statements: tuple[str, ...]
) -> None:
    assert (
        dialect_for("9.7.4-2").set_read_only_statements(state.read_only, state.super_read_only)
        == statements
    )


def test_mariadb_never_sets_super_read_only() -> None:
    assert dialect_for("10.11.19-MariaDB").set_read_only_statements(True, True) == (
        "SET GLOBAL read_only = ON",
    )


@pytest.mark.parametrize(
    "state",
    [
        ReadOnlyState(False),
        ReadOnlyState(True),
        ReadOnlyState(True, True),
        ReadOnlyState(True, False),
        ReadOnlyState(False, False),
    ],
)
def test_read_only_state_round_trips_through_the_journal_token(state: ReadOnlyState) -> None:
    assert ReadOnlyState.from_token(state.token()) == state


def test_old_journals_read_only_tokens_still_read() -> None:
    assert ReadOnlyState.from_token("1") == ReadOnlyState(True, None)
    assert ReadOnlyState.from_token("0") == ReadOnlyState(False, None)
    with pytest.raises(ValueError, match="not a read_only token"):
        ReadOnlyState.from_token("yes")
