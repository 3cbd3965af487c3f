"""Capture real status rows from a lab cluster into this folder (run by hand, from the repo root):

    .venv/bin/python -m tests.data.status.capture [--flavor mariadb|mysql]

Starts a 1+1 lab cluster of the flavour (MariaDB 10.11 or Oracle MySQL 9.7), then records,
exactly as pymysql's DictCursor returns them (PREFIX is ``mariadb-10.11`` or ``mysql-9.7``):
- PREFIX-replica.json: the replica status row of a healthy replica (the statement harestart's
  dialect picks: SHOW SLAVE STATUS on MariaDB, SHOW REPLICA STATUS on MySQL);
- PREFIX-io-stopped.json: the same after STOP ... IO_THREAD (what a detached replica shows);
- PREFIX-sql-broken.json: the same after a duplicate-key conflict stopped the SQL thread;
- PREFIX-io-connecting.json: the same while the source is down (IO thread retrying);
- PREFIX-server.json: the variables row harestart's server_info() reads;
- mha-ping-ok.txt, mha-stopped.txt (MariaDB only): masterha_check_status output (exit 0, 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

from harestart.domain.dialect import dialect_for
from tests.integration import lab

HERE = Path(__file__).resolve().parent


def plain(row: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, decimal.Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, dt.datetime):
            return v.isoformat()
        return v

    return {k: conv(v) for k, v in row.items()}


def save(name: str, row: dict[str, Any]) -> None:
    (HERE / name).write_text(json.dumps(plain(row), indent=2) + "\n")
    print(f"wrote {name}")


def capture(flavor: str) -> None:
    lab.ensure_lab_image(flavor)
    cluster = lab.start_cluster(1, name=f"capture-{flavor}", flavor=flavor)
    try:
        version = str(cluster.sql("db2", "SELECT @@version AS v")[0]["v"])
        dialect = dialect_for(version)
        major_minor = ".".join(str(n) for n in dialect.version[:2])
        prefix = f"{flavor}-{major_minor}"
        mysql = flavor == "mysql"
        io_col, sql_col = (
            ("Replica_IO_Running", "Replica_SQL_Running")
            if mysql
            else ("Slave_IO_Running", "Slave_SQL_Running")
        )

        def status() -> dict[str, Any]:
            return cluster.sql("db2", dialect.show_replica_status)[0]

        def local(sql: str) -> None:
            """As root on db2's socket, without binary logging (and super_read_only off)."""
            client = "mysql" if mysql else "mariadb"
            unlock = "SET GLOBAL super_read_only=OFF; " if mysql else ""
            relock = "; SET GLOBAL super_read_only=ON" if mysql else ""
            code, out = cluster.exec(
                "db2", [client, "-uroot", "-e", f"{unlock}SET sql_log_bin=0; {sql}{relock}"]
            )
            assert code == 0, out

        if not mysql:
            code, text = cluster.mha_status()
            assert code == 0
            (HERE / "mha-ping-ok.txt").write_text(text.strip() + "\n")
        save(f"{prefix}-replica.json", status())
        gtid = (
            "@@gtid_executed AS gtid_executed, @@super_read_only AS super_read_only"
            if mysql
            else "@@gtid_current_pos AS gtid_current_pos, @@gtid_binlog_pos AS gtid_binlog_pos,"
            " @@gtid_slave_pos AS gtid_slave_pos"
        )
        save(
            f"{prefix}-server.json",
            cluster.sql(
                "db2",
                "SELECT @@version AS version, @@server_id AS server_id, @@read_only AS read_only,"
                f" @@hostname AS hostname, {gtid}",
            )[0],
        )
        # Detached: what harestart leaves before restarting the source.
        cluster.sql("db2", dialect.stop_io_thread)
        lab.wait_for("IO thread stopped", lambda: status().get(io_col) == "No")
        save(f"{prefix}-io-stopped.json", status())
        cluster.sql("db2", dialect.start_io_thread)
        lab.wait_for("IO thread running", lambda: status().get(io_col) == "Yes")
        # A conflicting row on the replica, then the same key on the source.
        cluster.sql("db1", "CREATE TABLE labdb.conflict (id INT PRIMARY KEY)")
        lab.wait_for("table on db2", lambda: cluster.sql("db2", "SHOW TABLES FROM labdb"))
        local("INSERT INTO labdb.conflict VALUES (7)")
        cluster.sql("db1", "INSERT INTO labdb.conflict VALUES (7)")
        lab.wait_for("SQL thread stopped", lambda: status().get(sql_col) == "No")
        save(f"{prefix}-sql-broken.json", status())
        # Repair, then take the source away: the IO thread retries.
        local("DELETE FROM labdb.conflict")
        cluster.sql("db2", f"START {dialect.replica_word} SQL_THREAD")
        lab.wait_for("replicating", lambda: status().get(sql_col) == "Yes")
        cluster.exec("mha", ["masterha_stop", f"--conf={cluster.mha_config}"])
        lab.wait_for("MHA stopped", lambda: cluster.mha_status()[0] == 2)
        if not mysql:
            code, text = cluster.mha_status()
            assert code == 2
            (HERE / "mha-stopped.txt").write_text(text.strip() + "\n")
        cluster.exec("db1", ["service", "mysql" if mysql else "mariadb", "stop"])
        lab.wait_for(
            "IO thread connecting with an error",
            lambda: (st := status()).get(io_col) == "Connecting" and bool(st.get("Last_IO_Error")),
            timeout=120,
        )
        save(f"{prefix}-io-connecting.json", status())
    finally:
        cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flavor", choices=("mariadb", "mysql"), default="mariadb")
    capture(ap.parse_args().flavor)


if __name__ == "__main__":
    main()
