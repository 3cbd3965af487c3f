"""What every operation's performers and evaluators share: the step's own run facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harestart.adapters.protocols import CommandResult
from harestart.domain.plan.model import Step
from harestart.engine.sequencer.waits import Waiter


@dataclass
class StepRun:
    """What one step's gates need to know about that step's own actions."""

    step: Step
    issued_at: float | None = None  # clock time the restart command was sent
    back_at: float | None = None  # clock time the restart was proven
    restarted_before: bool = False  # resume: the interrupted attempt already restarted it
    command_result: CommandResult | None = None  # of the step's MHA command, if it sent one


# A performer carries out one action type; an evaluator checks one gate type.
Performer = Callable[[Waiter, Any, StepRun], None]
Evaluator = Callable[[Waiter, Any, StepRun], None]
