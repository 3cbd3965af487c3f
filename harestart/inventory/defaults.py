"""Every default harestart fills in for an inventory: one table, and nothing else states one.

``DEFAULTS`` has the shape of the file's own ``defaults:`` section and is the bottom layer of
the one layering (node -> group -> file defaults -> this table, see ``resolve.py``). MHA's
defaults depend on the group's config file, so they are a function of it.
"""

from __future__ import annotations

import functools
import posixpath
import shlex
from dataclasses import dataclass

from harestart.inventory.schema import DefaultsSpec, HealthSpec, MysqlSpec, SshSpec

SSH = SshSpec(
    port=22,  # also a jump host's port
    user="root",
    agent=False,
    sudo=False,
    accept_new_host_keys=False,
    connect_timeout=10.0,
    command_timeout=300.0,
)
MYSQL = MysqlSpec(port=3306, user="root", connect_timeout=5.0, tunnel=False)
RESTART_COMMAND = "systemctl restart mysql"
HEALTH = HealthSpec(
    max_lag=5.0,
    restart_timeout=180.0,
    catchup_timeout=300.0,
    failover_timeout=60.0,
    min_healthy_replicas=1,
)
DEFAULTS = DefaultsSpec(ssh=SSH, mysql=MYSQL, restart_command=RESTART_COMMAND, health=HEALTH)
# How the source is restarted (`source_strategy:`; `--source-strategy` overrides it) and the
# replication account's user when `replication:` names none.
SOURCE_STRATEGY = "restart"
REPLICATION_USER = "repl"
# defaults.coordination.lease: how long a dead holder keeps a shared lock (no coordination
# setting at all means the local lock, which has no lease).
COORDINATION_LEASE = 30.0
# hooks.<point>.timeout: seconds a hook may run before its process group is killed.
HOOK_TIMEOUT = 60.0

# Not settable in the file: how long one MySQL query may take before the connection is dropped.
MYSQL_READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class MhaDefaults:
    log: str
    stop_command: str
    start_command: str  # the manager itself; the adapter always starts it detached
    status_command: str


def app_name(config_path: str) -> str:
    """MHA names the application after the config file: ``/etc/mha/app1.cnf`` -> ``app1``."""
    base = posixpath.basename(config_path)
    return base.rsplit(".", 1)[0] if "." in base else base


@functools.lru_cache(maxsize=1024)  # a fleet's groups often share one path
def mha_defaults(config_path: str) -> MhaDefaults:
    """MHA's own commands and log path for the application configured in ``config_path``."""
    conf = shlex.quote(f"--conf={config_path}")  # a validated path needs no quoting; be safe
    return MhaDefaults(
        log=f"/var/log/mha/{app_name(config_path)}/manager.log",
        stop_command=f"masterha_stop {conf}",
        start_command=f"masterha_manager {conf} --ignore_last_failover",
        status_command=f"masterha_check_status {conf}",
    )
