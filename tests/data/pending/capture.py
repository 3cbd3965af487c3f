"""Capture what pending-restart detection reads from a lab cluster into this folder (run by
hand, from the repo root):

    .venv/bin/python -m tests.data.pending.capture [--flavor mariadb|mysql]

Starts a 1+1 lab cluster of the flavour (MariaDB 10.11 or Oracle MySQL 9.7), then records:
- FLAVOR-variables.json: the server version and the rows of every statement
  ``settings_statements`` picks for it (a fresh server), one row a line;
- FLAVOR-host-fresh.txt: the host command's output on the fresh source, run as root (what
  ``sudo: true`` gives);
- FLAVOR-host-not-root.txt: the same run as the lab's ``ops`` user without sudo (no /proc
  access to mysqld);
- FLAVOR-host-replaced.txt: on the replica, after its server binary and libssl were replaced
  the way a package upgrade does (copied, then renamed over the original).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harestart.domain.dialect import dialect_for
from harestart.domain.pending import host_script, option_groups, parse_settings
from harestart.domain.pending.settings import settings_statements
from tests.integration import lab

HERE = Path(__file__).resolve().parent


def replace_file(cluster: lab.LabCluster, node: str, path: str) -> None:
    """Copy ``path`` and rename the copy over it, as dpkg installs a new version."""
    code, out = cluster.exec(
        node, ["sh", "-c", f'cp -p "{path}" "{path}.new" && mv "{path}.new" "{path}"']
    )
    if code != 0:
        raise RuntimeError(f"{node}: replacing {path}: {out}")


def capture(flavor: str) -> None:
    lab.ensure_lab_image(flavor)
    cluster = lab.start_cluster(1, name=f"capture-pending-{flavor}", flavor=flavor)
    try:
        version = str(cluster.sql("db1", "SELECT @@version AS v")[0]["v"])
        dialect = dialect_for(version)
        results = [
            [
                {k: None if v is None else str(v) for k, v in row.items()}
                for row in cluster.sql("db1", s)
            ]
            for s in settings_statements(dialect.flavor, dialect.version)
        ]
        rows = ",\n".join(
            "[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in result) + "\n]"
            for result in results
        )
        text = f'{{"version": {json.dumps(version)}, "results": [\n{rows}\n]}}\n'
        (HERE / f"{flavor}-variables.json").write_text(text)
        settings = parse_settings(dialect.flavor, dialect.version, results)
        command = host_script(settings.pid_file, option_groups(dialect.flavor, dialect.version))
        script = command.removeprefix("sh -c ")
        outputs = {
            "fresh": cluster.exec("db1", command)[1],
            "not-root": cluster.exec(
                "db1", ["su", "ops", "-s", "/bin/sh", "-c", f"sh -c {script}"]
            )[1],
        }
        binary = "/usr/sbin/mariadbd" if flavor == "mariadb" else "/usr/sbin/mysqld"
        replace_file(cluster, "db2", binary)
        replace_file(cluster, "db2", "/usr/lib/x86_64-linux-gnu/libssl.so.3")
        outputs["replaced"] = cluster.exec("db2", command)[1]
        for name, output in outputs.items():
            (HERE / f"{flavor}-host-{name}.txt").write_text(output)
        print(f"wrote {flavor}-variables.json and {flavor}-host-*.txt")
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavor", choices=lab.FLAVORS, default=None, help="default: both")
    args = parser.parse_args()
    for flavor in [args.flavor] if args.flavor else lab.FLAVORS:
        capture(flavor)


if __name__ == "__main__":
    main()
