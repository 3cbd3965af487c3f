"""Capture real status rows from a lab cluster into this folder (run by hand, from the repo root):

    .venv/bin/python -m tests.data.status.capture

Starts a 1+1 lab cluster, then records, exactly as pymysql's DictCursor returns them:
- mariadb-10.11-replica.json: SHOW SLAVE STATUS of a healthy replica;
- mariadb-10.11-sql-broken.json: the same after a duplicate-key conflict stopped the SQL thread;
- mariadb-10.11-io-connecting.json: the same while the source is down (IO thread retrying);
- mariadb-10.11-server.json: the variables row harestart's server_info() reads;
- mha-ping-ok.txt, mha-stopped.txt: masterha_check_status output (exit codes 0 and 2).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

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


def main() -> None:
    lab.ensure_lab_image()
    cluster = lab.start_cluster(1, name="capture")
    try:
        code, text = cluster.mha_status()
        assert code == 0
        (HERE / "mha-ping-ok.txt").write_text(text.strip() + "\n")
        save("mariadb-10.11-replica.json", cluster.slave_status("db2"))
        save(
            "mariadb-10.11-server.json",
            cluster.sql(
                "db2",
                "SELECT @@version AS version, @@server_id AS server_id, @@read_only AS read_only,"
                " @@hostname AS hostname, @@gtid_current_pos AS gtid_current_pos,"
                " @@gtid_binlog_pos AS gtid_binlog_pos, @@gtid_slave_pos AS gtid_slave_pos",
            )[0],
        )
        # A conflicting row on the replica, then the same key on the source.
        cluster.sql("db1", "CREATE TABLE labdb.conflict (id INT PRIMARY KEY)")
        lab.wait_for("table on db2", lambda: cluster.sql("db2", "SHOW TABLES FROM labdb"))
        cluster.exec(
            "db2", ["mariadb", "-e", "SET sql_log_bin=0; INSERT INTO labdb.conflict VALUES (7)"]
        )
        cluster.sql("db1", "INSERT INTO labdb.conflict VALUES (7)")
        lab.wait_for(
            "SQL thread stopped",
            lambda: cluster.slave_status("db2").get("Slave_SQL_Running") == "No",
        )
        save("mariadb-10.11-sql-broken.json", cluster.slave_status("db2"))
        # Repair, then take the source away: the IO thread retries.
        cluster.exec("db2", ["mariadb", "-e", "SET sql_log_bin=0; DELETE FROM labdb.conflict"])
        cluster.sql("db2", "START SLAVE SQL_THREAD")
        lab.wait_for("replicating", lambda: cluster.replicating("db2"))
        cluster.exec("mha", ["masterha_stop", f"--conf={cluster.mha_config}"])
        lab.wait_for("MHA stopped", lambda: cluster.mha_status()[0] == 2)
        code, text = cluster.mha_status()
        assert code == 2
        (HERE / "mha-stopped.txt").write_text(text.strip() + "\n")
        cluster.exec("db1", ["service", "mariadb", "stop"])
        lab.wait_for(
            "IO thread connecting with an error",
            lambda: (
                (st := cluster.slave_status("db2")).get("Slave_IO_Running") == "Connecting"
                and bool(st.get("Last_IO_Error"))
            ),
            timeout=120,
        )
        save("mariadb-10.11-io-connecting.json", cluster.slave_status("db2"))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
