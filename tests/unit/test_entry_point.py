"""``POST .../action`` runs go through the same engine entry point as ``harestart run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harestart.domain.topology import MhaState
from harestart.engine.state.lock import read_holder
from harestart.http.api import Unprocessable
from harestart.http.jobs import BackgroundRestarter
from harestart.inventory.load import load_inventory

from .test_cli_run import ACCOUNT, Lab, lab, unfinished_journal

__all__ = ["lab"]  # the fixture


def test_background_restart_runs_the_engine_in_the_injected_environment(
    lab: Callable[..., Lab],
) -> None:
    x = lab("a", "b")
    groups = {g.id: g for g in load_inventory(x.inventory).groups}
    restarter = BackgroundRestarter(str(x.inventory), env=x.env)
    restarter.start(groups["a"], "req-1")
    assert restarter.wait(timeout=30)
    assert x.restarts("a") == [1, 1, 1] and x.restarts("b") == [0, 0, 0]
    assert x.worlds["a"].mha_state is MhaState.PING_OK
    journal = x.journal("a")
    assert journal is not None and journal.finished
    assert read_holder(Path(x.state), ACCOUNT, "a") == (None, False)

    # Refused before its first step, like the CLI: an unfinished run (422).
    unfinished_journal(x, "b")
    with pytest.raises(Unprocessable, match="group b has an unfinished run"):
        restarter.start(groups["b"], "req-2")
    assert x.restarts("b") == [0, 0, 0]
