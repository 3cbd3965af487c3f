"""Carrying out a ``RunHook``: run it on the bastion (or, in the persistent mode, send its
event to the run's program: ``engine.ops.programs``), log how it ended, fail its step if it did.

The hook's output is never logged; a failed hook's reason (the step's failure, the result,
the journal) carries the end of it, scrubbed of every known secret. The runner is handed the
hook's whole environment, built here from harestart's through the domain's allow-list.
"""

from __future__ import annotations

import os
from typing import Any

from harestart.domain.actions import PlanAction
from harestart.domain.hook_protocol import EventOutcome
from harestart.domain.hooks import HookOutcome, RunHook, hook_environment, hook_failure
from harestart.domain.secret import scrub
from harestart.engine.ops.base import Performer, StepRun
from harestart.engine.sequencer.waits import Waiter
from harestart.errors import GateFailed


class HookFailed(GateFailed):
    """A hook exited non-zero or timed out: its step failed (the failure policy decides MHA)."""

    def __init__(self, step: str, act: RunHook, reason: str) -> None:
        super().__init__(step, act.host, reason)
        self.point = act.point
        self.old_source, self.new_source = act.old_source, act.new_source


def run_hook(w: Waiter, act: RunHook, st: StepRun) -> None:
    scope = w.scope
    runner = scope.hooks
    if runner is None:  # the inventory names a hook the caller gave no way to run
        raise GateFailed(st.step.key, act.host, f"hook {act.point.value}: no hook runner here")
    run_id = scope.journal.run_id if scope.journal is not None else "-"
    outcome: HookOutcome | EventOutcome
    if act.hook.persistent:
        scope.progress(
            act.host, f"hook {act.point.value}: sending the event to `{act.hook.command}`"
        )
        outcome = scope.programs.send(runner, act, run_id, os.environ)
    else:
        env = hook_environment(scope.group, act, run_id, os.environ)
        scope.progress(act.host, f"hook {act.point.value}: running `{act.hook.command}`")
        outcome = runner.run(act.hook.command, cwd=act.hook.cwd, env=env, timeout=act.hook.timeout)
    fields: dict[str, Any] = {
        "point": act.point.value,
        "host": act.host,
        "exit_status": outcome.exit_status,
        "timed_out": outcome.timed_out,
        "duration_s": round(outcome.duration_s, 3),
    }
    if isinstance(outcome, EventOutcome):
        fields.update(mode="persistent", answer=outcome.ending.value)
    if outcome.ok:
        scope.log.info("hook.finished", **fields)
        scope.progress(act.host, f"hook {act.point.value}: {outcome.status_text()}")
        return
    scope.log.error("hook.failed", **fields)
    # The whole reason is scrubbed: a persistent program's message may hold a secret too.
    raise HookFailed(st.step.key, act, scrub(hook_failure(act, outcome, scrub(outcome.output))))


PERFORMERS: dict[type[PlanAction], Performer] = {RunHook: run_hook}  # on the bastion
