"""Capture GTID text from a real Oracle MySQL 9.7 lab with tagged GTIDs (MySQL 8.3+) into
this folder (run by hand, from the repo root; it starts and removes its own cluster):

    .venv/bin/python -m tests.data.gtid.capture

On a 1 source + 2 replicas cluster: untagged writes, then transactions with
``SET gtid_next='AUTOMATIC:audit'`` and ``'AUTOMATIC:Maint_2'`` on the source (as root: the
TRANSACTION_GTID_TAG privilege), and one tagged transaction written on db3 alone (an errant
one, so db3's executed set holds two server UUIDs). Then records:
- mysql-9.7-tagged-server.json: the source's ``@@global.gtid_executed`` (as sent, newlines
  included) and ``@@server_uuid``;
- mysql-9.7-tagged-replica.json / mysql-9.7-tagged-errant-replica.json: db2's and db3's
  ``SHOW REPLICA STATUS`` rows (Retrieved_Gtid_Set, Executed_Gtid_Set);
- mysql-9.7-tagged-answers.json: the server's own ``GTID_SUBSET`` / ``GTID_SUBTRACT``
  answers for pairs of those sets, which the pure model (harestart/domain/gtid.py) must
  reproduce.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from harestart.domain.dialect import dialect_for
from tests.data.status.capture import plain
from tests.integration import lab

HERE = Path(__file__).resolve().parent
PREFIX = "mysql-9.7-tagged"


def save(name: str, data: Any) -> None:
    (HERE / name).write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {name}")


def tagged(cluster: lab.LabCluster, node: str, tag: str, n: int, *, log: bool = True) -> None:
    """``n`` transactions on ``node`` as root on its socket, each with GTID tag ``tag``."""
    unlock = "" if node == "db1" else "SET GLOBAL super_read_only=OFF; "
    relock = "" if node == "db1" else "SET GLOBAL super_read_only=ON; "
    insert = "INSERT INTO labdb.tagged (note) VALUES ('tagged'); "
    writes = f"SET gtid_next='AUTOMATIC:{tag}'; {insert}" * n  # tag: this script's constants
    code, out = cluster.exec(node, ["mysql", "-uroot", "-e", f"{unlock}{writes}{relock}"])
    assert code == 0, out


def capture() -> None:
    lab.ensure_lab_image("mysql")
    cluster = lab.start_cluster(2, name="capture-gtid", flavor="mysql")
    try:
        version = str(cluster.sql("db1", "SELECT @@version AS v")[0]["v"])
        dialect = dialect_for(version)
        cluster.sql(
            "db1", "CREATE TABLE labdb.tagged (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)"
        )
        for i in range(3):
            cluster.sql("db1", "INSERT INTO labdb.tagged (note) VALUES (%s)", (f"plain {i}",))
        tagged(cluster, "db1", "audit", 2)
        tagged(cluster, "db1", "Maint_2", 1)  # tags are case-insensitive: the server lower-cases
        cluster.sql("db1", "INSERT INTO labdb.tagged (note) VALUES ('plain again')")
        cluster.wait_replicated(timeout=120)
        tagged(cluster, "db3", "local_fix", 1)  # errant: db3 alone has it
        source = cluster.sql(
            "db1", "SELECT @@global.gtid_executed AS gtid_executed, @@server_uuid AS uuid"
        )[0]
        save(
            f"{PREFIX}-server.json",
            {
                "captured": dt.date.today().isoformat(),
                "version": version,
                **plain(source),
            },
        )
        rows = {
            name: plain(cluster.sql(name, dialect.show_replica_status)[0])
            for name in ("db2", "db3")
        }
        save(f"{PREFIX}-replica.json", rows["db2"])
        save(f"{PREFIX}-errant-replica.json", rows["db3"])
        sets = {
            "source": str(source["gtid_executed"]),
            "db2": str(rows["db2"]["Executed_Gtid_Set"]),
            "db3": str(rows["db3"]["Executed_Gtid_Set"]),
            "db2_retrieved": str(rows["db2"]["Retrieved_Gtid_Set"]),
            "audit_only": f"{source['uuid']}:audit:1-2",
            "mixed": f"{source['uuid']}:2-3:audit:2:maint_2:1",
        }
        answers = []
        for a_name, a in sets.items():
            for b_name, b in sets.items():
                row = cluster.sql(
                    "db1",
                    "SELECT GTID_SUBSET(%s, %s) AS subset, GTID_SUBTRACT(%s, %s) AS minus",
                    (a, b, a, b),
                )[0]
                answers.append(
                    {
                        "a": a_name,
                        "b": b_name,
                        "subset": int(row["subset"]),
                        "minus": str(row["minus"]),
                    }
                )
        save(f"{PREFIX}-answers.json", {"sets": sets, "answers": answers})
    finally:
        cluster.stop()


if __name__ == "__main__":
    capture()
