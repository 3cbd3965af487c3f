"""Wiring: the real Environment (paramiko/pymysql connector, MHA manager, state directory).

This is the only module besides the adapters that knows which concrete adapters exist; the
engine sees Protocols only, through the ``Environment`` built here. The CLI and the HTTP jobs
take this Environment by default; the unit tests give them one on the fakes.
"""

from __future__ import annotations

import os
from pathlib import Path

from harestart.adapters.coordination import ToozCoordination, tooz_fleet
from harestart.adapters.hooks import SubprocessHookRunner
from harestart.adapters.mha import MhaManager
from harestart.adapters.pending_marks import ToozMarks
from harestart.adapters.protocols import Connector, FailoverManager, PendingMarks
from harestart.adapters.ssh import ParamikoConnector
from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.engine import run
from harestart.engine.coordination import Coordination, LocalCoordination
from harestart.engine.state.marks import LocalMarks


def state_dir() -> Path:
    """Where run logs (and journals) live: $HARESTART_STATE_DIR or ~/.local/state/harestart."""
    env = os.environ.get("HARESTART_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harestart"


def failover_manager(group: Group, connector: Connector) -> FailoverManager:
    m = group.mha
    shell = connector.shell(m.manager.name, m.manager.ssh)
    return MhaManager(
        shell,
        config_path=m.config,
        log_path=m.log,
        status_command=m.status_command,
    )


def coordination(group: Group, state_dir: Path) -> Coordination:
    """The group's lock backend: the local flock, or the shared service its inventory names
    (tooz, imported only then: a missing extra is refused with exit 3)."""
    if group.coordination is None:
        return LocalCoordination(state_dir)
    return ToozCoordination(group.coordination, group.id)


def marks(group: Group, state_dir: Path) -> PendingMarks:
    """Where the group's pending-restart marks are kept: its coordination service, else the
    state directory (#23)."""
    if group.coordination is None:
        return LocalMarks(state_dir)
    return ToozMarks(ToozCoordination(group.coordination, group.id))


def environment() -> run.Environment:
    """The real hosts: SSH/MySQL through paramiko and pymysql, MHA over SSH, the real clock,
    and the state directory as the process environment names it now."""
    return run.Environment(
        connector=ParamikoConnector,
        failover_manager=failover_manager,
        state_dir=state_dir(),
        coordination=coordination,
        fleet=tooz_fleet,
        hooks=SubprocessHookRunner(),
        marks=marks,
    )


# For callers that do not carry an Environment (the API's observer).


def observe_groups(
    groups: tuple[Group, ...], *, detect_pending: bool = False
) -> list[tuple[Group, GroupState]]:
    return run.observe_groups(groups, env=environment(), detect_pending=detect_pending)
