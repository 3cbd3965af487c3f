from __future__ import annotations

import json
from pathlib import Path

import pytest

from harestart.domain.gtid import MysqlGtidSet
from harestart.domain.topology import (
    Flavor,
    MhaState,
    ReadOnlyState,
    ReplicaStatus,
    flavor_from_version,
    parse_mha_status,
    parse_replica_status,
    parse_server_info,
    version_tuple,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "status"


def row(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((DATA / f"{name}.json").read_text())
    return loaded


def mha_text(name: str) -> str:
    return (DATA / f"mha-{name}.txt").read_text()


# -- server info -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "flavor", "numbers"),
    [
        ("10.11.6-MariaDB-0+deb12u1", Flavor.MARIADB, (10, 11, 6)),
        ("10.11.19-MariaDB-0+deb12u1-log", Flavor.MARIADB, (10, 11, 19)),
        ("5.5.5-10.6.12-MariaDB", Flavor.MARIADB, (10, 6, 12)),
        ("8.0.36", Flavor.MYSQL, (8, 0, 36)),
        ("8.4.0-log", Flavor.MYSQL, (8, 4, 0)),
        ("8.0.36-28-Percona XtraDB Cluster", Flavor.MYSQL, (8, 0, 36)),
    ],
)
def test_flavor_and_version(version: str, flavor: Flavor, numbers: tuple[int, ...]) -> None:
    assert flavor_from_version(version) is flavor
    assert version_tuple(version) == numbers


def test_version_tuple_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unrecognised server version"):
        version_tuple("banana")


def test_parse_mariadb_server_info() -> None:
    info = parse_server_info(
        {
            "version": "10.11.6-MariaDB-0+deb12u1-log",
            "server_id": 2,
            "read_only": 1,
            "hostname": "db2",
            "uptime": b"3605",
            "gtid_current_pos": "0-1-42",
            "gtid_binlog_pos": "0-1-42",
            "gtid_slave_pos": "0-1-42",
        }
    )
    assert info.flavor is Flavor.MARIADB
    assert info.version_tuple == (10, 11, 6)
    assert info.server_id == 2
    assert info.read_only is True
    assert info.uptime == 3605
    assert info.hostname == "db2"
    assert info.gtid_position == "0-1-42"
    assert info.gtid_executed == ""
    assert info.describe() == (
        "db2 server 2, 10.11.6-MariaDB-0+deb12u1-log, read-only, up 3605 s, GTID 0-1-42"
    )


def test_parse_mysql_server_info_with_at_keys_and_multiline_gtid_set() -> None:
    info = parse_server_info(
        {
            "@@version": "8.4.0",
            "@@server_id": "101",
            "@@global.read_only": "0",
            "@@hostname": "db1",
            "Uptime": "12",
            "@@gtid_executed": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-27,\n"
            "4f22ab58-82db-11e1-9e33-c80aa9429563:1-3",
        }
    )
    assert info.flavor is Flavor.MYSQL
    assert info.read_only is False
    assert info.server_id == 101
    assert info.uptime == 12
    assert info.gtid_position == (
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-27,4f22ab58-82db-11e1-9e33-c80aa9429563:1-3"
    )


def test_server_info_requires_version_and_server_id() -> None:
    with pytest.raises(ValueError, match="no version"):
        parse_server_info({"server_id": 1})
    with pytest.raises(ValueError, match="server_id"):
        parse_server_info({"version": "8.0.36", "server_id": None})


# -- replica status --------------------------------------------------------------------------


def test_mariadb_healthy_replica() -> None:
    status = parse_replica_status(row("mariadb-10.11-replica"))
    assert status.io_running == "Yes"
    assert status.sql_running == "Yes"
    assert status.lag_seconds == 0
    assert (status.source_host, status.source_port, status.source_server_id) == ("db1", 3306, 1)
    assert status.gtid_io_pos == "0-1-7"
    assert status.using_gtid is True
    assert status.gtid_mode == "Slave_Pos"
    assert status.sql_state == "Slave has read all relay log; waiting for more updates"
    assert status.source_log_file == "mysql-bin.000001"
    assert status.read_source_log_pos == status.exec_source_log_pos == 1554
    assert status.connect_retry == 60
    assert status.threads_running()
    assert not status.io_connecting()
    assert not status.broken()
    assert not status.stopped()
    assert status.lag_within(0)
    assert status.error_text() == ""
    assert status.describe() == "IO Yes, SQL Yes, lag 0 s, from server 1 (db1:3306)"
    assert status.raw["Parallel_Mode"] == "optimistic"


def test_mariadb_broken_sql_thread_keeps_server_text() -> None:
    status = parse_replica_status(row("mariadb-10.11-sql-broken"))
    assert status.sql_running == "No"
    assert status.last_sql_errno == 1062
    assert status.broken()
    assert status.sql_broken()
    assert not status.io_broken()
    assert not status.threads_running()
    assert status.lag_seconds is None
    assert not status.lag_within(10_000)
    # The server's own words, as captured from MariaDB 10.11 in the lab.
    assert status.error_text().startswith(
        "SQL thread: Could not execute Write_rows_v1 event on table labdb.conflict; "
        "Duplicate entry '7' for key 'PRIMARY', Error_code: 1062"
    )
    assert "lag unknown" in status.describe()
    assert "Duplicate entry" in status.describe()


def test_mariadb_io_connecting_after_source_restart() -> None:
    status = parse_replica_status(row("mariadb-10.11-io-connecting"))
    assert status.io_connecting()
    assert not status.broken()  # retrying, not stopped
    assert not status.threads_running()
    assert status.last_io_errno == 2003
    assert "retry-time: 60" in status.error_text()
    assert status.error_text().startswith("IO thread: error reconnecting to master")
    assert status.io_state == "Reconnecting after a failed master event read"


@pytest.mark.parametrize("name", ["mysql-8.0-replica.from-manual", "mysql-8.4-replica.from-manual"])
def test_mysql_column_names_are_normalised(name: str) -> None:
    status = parse_replica_status(row(name))
    assert status.threads_running()
    assert status.using_gtid is True
    assert status.gtid_mode == "Auto_Position"
    assert status.gtid_io_pos.startswith("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-")
    assert status.executed_gtid_set
    assert "\n" not in status.executed_gtid_set
    assert status.source_port == 3306
    assert status.sql_state


def test_mysql_84_lagging_replica() -> None:
    status = parse_replica_status(row("mysql-8.4-replica.from-manual"))
    assert status.lag_seconds == 3
    assert status.lag_within(3)
    assert not status.lag_within(2)
    assert status.describe() == "IO Yes, SQL Yes, lag 3 s, from server 101 (db1:3306)"
    executed, retrieved = (
        MysqlGtidSet.parse(status.executed_gtid_set),
        MysqlGtidSet.parse(status.gtid_io_pos),
    )
    assert not executed.covers(retrieved)


def test_old_mysql_slave_columns_and_bytes_cells() -> None:
    status = parse_replica_status(
        {
            "Slave_IO_Running": b"No",
            "Slave_SQL_Running": b"No",
            "Seconds_Behind_Master": None,
            "Master_Host": b"db1",
            "Master_Port": b"3306",
            "Master_Server_Id": None,
            "Auto_Position": b"0",
            "Last_IO_Errno": b"0",
            "Last_IO_Error": None,
            "Last_SQL_Errno": 0,
            "Last_SQL_Error": b"",
        }
    )
    assert status.stopped()
    assert not status.broken()  # stopped by hand, no error
    assert status.using_gtid is False
    assert status.source_port == 3306
    assert status.source_server_id is None
    assert status.describe() == "IO No, SQL No, lag unknown, from db1:3306"


def test_replica_status_rejects_other_rows() -> None:
    with pytest.raises(ValueError, match="not a replica status row"):
        parse_replica_status({"Variable_name": "Uptime", "Value": "3"})


def test_replica_status_is_hashable_and_compares_without_raw() -> None:
    a = parse_replica_status(row("mariadb-10.11-replica"))
    b = parse_replica_status({**row("mariadb-10.11-replica"), "Relay_Log_Space": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a, ReplicaStatus)


# -- MHA -------------------------------------------------------------------------------------


def test_mha_ping_ok() -> None:
    status = parse_mha_status(0, mha_text("ping-ok"))
    assert status.state is MhaState.PING_OK
    assert status.pid == 75
    assert status.master == "db1"
    assert status.running()
    assert status.healthy()
    assert not status.stopped()
    assert not status.error()
    assert status.describe() == "MHA PING_OK (exit 0), pid 75, master db1"


def test_mha_stopped() -> None:
    status = parse_mha_status(2, mha_text("stopped"))
    assert status.state is MhaState.NOT_RUNNING
    assert status.stopped()
    assert not status.running()
    assert status.pid is None
    assert status.master is None


def test_mha_initializing() -> None:
    status = parse_mha_status(10, mha_text("initializing"))
    assert status.state is MhaState.INITIALIZING_MONITOR
    assert status.running()
    assert not status.healthy()


def test_mha_ping_failing_and_failover() -> None:
    failing = parse_mha_status(20, mha_text("ping-failing"))
    assert failing.state is MhaState.PING_FAILING
    assert failing.master_unreachable()
    assert failing.master == "db1"
    failover = parse_mha_status(50, mha_text("failover-running"))
    assert failover.failover_in_progress()
    assert failover.running()
    assert failover.master == "db1"


def test_mha_partially_running_is_an_error() -> None:
    status = parse_mha_status(3, mha_text("partially-running"))
    assert status.state is MhaState.PARTIALLY_RUNNING
    assert status.error()
    assert status.pid is None  # "child pid" is not the manager's pid


def test_mha_text_wins_over_exit_code() -> None:
    # masterha_check_status run through a wrapper that loses the exit code
    assert parse_mha_status(0, mha_text("stopped")).state is MhaState.NOT_RUNNING


@pytest.mark.parametrize(
    ("code", "state"),
    [(0, MhaState.PING_OK), (2, MhaState.NOT_RUNNING), (31, MhaState.CONFIG_ERROR)],
)
def test_mha_falls_back_to_exit_code(code: int, state: MhaState) -> None:
    assert parse_mha_status(code, "").state is state


def test_mha_unknown_output_keeps_text() -> None:
    status = parse_mha_status(
        1, "Got error on conf /etc/mha/app1.cnf: /etc/mha/app1.cnf not found!\n"
    )
    assert status.state is MhaState.UNKNOWN
    assert status.error()
    assert "not found" in status.describe()


def test_mha_unknown_code_with_known_name() -> None:
    assert parse_mha_status(99, "x (99:CONFIG_ERROR)").state is MhaState.CONFIG_ERROR


def test_server_info_from_a_captured_mariadb_row() -> None:
    info = parse_server_info(row("mariadb-10.11-server") | {"uptime": 12})
    assert info.flavor is Flavor.MARIADB and info.version_tuple[:2] == (10, 11)
    assert info.server_id == 2 and info.read_only is True and info.hostname == "db2"
    assert info.gtid_position == info.gtid_binlog_pos


# -- Oracle MySQL 9.7: rows captured from the lab (python -m tests.data.status.capture) --------


def test_mysql_97_healthy_replica() -> None:
    status = parse_replica_status(row("mysql-9.7-replica"))
    assert status.threads_running() and not status.broken()
    assert status.lag_within(0) and status.source_server_id == 1
    assert status.gtid_mode == "Auto_Position" and status.using_gtid
    assert status.source_host == "db1" and status.source_port == 3306
    executed = MysqlGtidSet.parse(status.executed_gtid_set)
    assert executed.covers(MysqlGtidSet.parse(status.gtid_io_pos))


def test_mysql_97_detached_replica_is_stopped_not_broken() -> None:
    status = parse_replica_status(row("mysql-9.7-io-stopped"))
    assert status.io_running == "No" and status.sql_running == "Yes"
    assert not status.broken() and not status.threads_running() and not status.io_connecting()


def test_mysql_97_broken_sql_thread() -> None:
    status = parse_replica_status(row("mysql-9.7-sql-broken"))
    assert status.sql_broken() and status.last_sql_errno == 1062
    assert status.lag_seconds is None
    # The multi-threaded applier's coordinator only points at the worker table; the adapter
    # reads the worker's own error from there (proven on a real server by the fault test).
    assert "replication_applier_status_by_worker" in status.last_sql_error


def test_mysql_97_io_connecting_after_source_stop() -> None:
    status = parse_replica_status(row("mysql-9.7-io-connecting"))
    assert status.io_connecting() and not status.broken()
    assert status.last_io_errno == 2003
    assert "Error reconnecting to source" in status.error_text()
    assert status.io_state == "Reconnecting after a failed source event read"


def test_mysql_97_server_row() -> None:
    info = parse_server_info(row("mysql-9.7-server") | {"uptime": 5})
    assert info.flavor is Flavor.MYSQL and info.version_tuple == (9, 7, 4)
    assert info.read_only_state == ReadOnlyState(True, True)
    assert info.gtid_position == info.gtid_executed and ":" in info.gtid_position


# -- MySQL 9.7 with tagged GTIDs (8.3+): rows captured by python -m tests.data.gtid.capture ----

GTID_DATA = DATA.parent / "gtid"


def tagged_row(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (GTID_DATA / f"mysql-9.7-tagged-{name}.json").read_text()
    )
    return loaded


@pytest.mark.parametrize("name", ["replica", "errant-replica"])
def test_mysql_97_replica_rows_with_tagged_gtids_parse(name: str) -> None:
    raw = tagged_row(name)
    status = parse_replica_status(raw)
    assert status.threads_running() and status.using_gtid
    assert ":audit:1-2:maint_2:1" in status.gtid_io_pos
    assert "\n" not in status.executed_gtid_set  # one line, as the server's text without it
    for text, column in (
        (status.gtid_io_pos, "Retrieved_Gtid_Set"),
        (status.executed_gtid_set, "Executed_Gtid_Set"),
    ):
        parsed = MysqlGtidSet.parse(text)
        assert parsed == MysqlGtidSet.parse(str(raw[column]))
        assert str(parsed) == str(raw[column]).replace("\n", "")  # the server's canonical text
    executed = MysqlGtidSet.parse(status.executed_gtid_set)
    assert executed.covers(MysqlGtidSet.parse(status.gtid_io_pos))
