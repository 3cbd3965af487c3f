"""Slots: the values of a planned statement only the run can know, filled by the performer."""

from __future__ import annotations

import pytest

from harestart.domain.actions import READ_ONLY_BEFORE, REPLICATION_PASSWORD, THREAD_ID
from harestart.domain.secret import Secret
from harestart.domain.sql import Slot, Sql


def test_a_slot_is_shown_as_the_plan_says_and_filled_as_a_value() -> None:
    kill = Sql("KILL %s", (THREAD_ID,))
    assert kill.shown() == "KILL <thread id>" and kill.slots == (THREAD_ID,)
    filled = kill.fill({THREAD_ID: 42})
    assert filled == Sql("KILL %s", (42,)) and filled.driver_args() == (42,)
    assert kill.admits(filled) and not kill.admits(Sql("KILL QUERY %s", (42,)))


def test_a_keyword_slot_is_written_into_the_text_and_only_with_its_words() -> None:
    restore = Sql("SET GLOBAL read_only = %s", (READ_ONLY_BEFORE,))
    assert restore.shown() == "SET GLOBAL read_only = <ON|OFF as before>"
    assert restore.fill({READ_ONLY_BEFORE: "OFF"}) == Sql("SET GLOBAL read_only = OFF")
    with pytest.raises(ValueError, match="must be one of ON, OFF"):
        restore.fill({READ_ONLY_BEFORE: "OFF; DROP TABLE t"})
    assert restore.admits(Sql("SET GLOBAL read_only = ON"))


def test_a_secret_slot_is_shown_masked_and_its_value_stays_a_secret() -> None:
    change = Sql(
        "CHANGE MASTER TO MASTER_USER=%s, MASTER_PASSWORD=%s", ("repl", REPLICATION_PASSWORD)
    )
    assert change.shown() == "CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='***'"
    filled = change.fill({REPLICATION_PASSWORD: Secret("s3cr3t")})
    assert filled.shown() == change.shown() and "s3cr3t" not in repr(filled)
    assert filled.driver_args() == ("repl", "s3cr3t") and change.admits(filled)


def test_a_slot_without_a_value_is_never_sent() -> None:
    other = Slot("something else")
    kill = Sql("KILL %s", (THREAD_ID,))
    with pytest.raises(ValueError, match="no value for <thread id>"):
        kill.fill({other: 1})
    with pytest.raises(ValueError, match="not filled"):
        kill.driver_args()
    assert kill.logged_args() == ["<thread id>"]


def test_fill_keeps_percent_signs_and_fixed_values() -> None:
    sql = Sql("SELECT %s LIKE 'a%%', %s", ("x%", THREAD_ID))
    assert sql.fill({THREAD_ID: 7}) == Sql("SELECT %s LIKE 'a%%', %s", ("x%", 7))
