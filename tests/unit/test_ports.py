"""Readers and writers are different ports: gates only look, actions only send what they say.

Part of this file is proven by mypy (``make lint`` checks tests strictly, unused ``type:
ignore`` comments included): each ``type: ignore`` below marks something the type checker
must refuse. Were a gate's view (``Looking``) ever given a way to write, or a performer's
signature accepted as an evaluator, the ignore would be unused and lint would fail.
"""

from __future__ import annotations

import inspect
from typing import Any

from harestart.adapters.mysql import PyMysqlCommands, PyMysqlReader
from harestart.adapters.protocols import MysqlCommands, MysqlReader
from harestart.domain.gates import Gate, Restarted
from harestart.domain.sql import Sql
from harestart.engine.ops.base import Evaluator, Looking, StepRun
from harestart.engine.ops.registry import EVALUATORS
from harestart.engine.sequencer.waits import Waiter


def _a_gate_that_would_write(w: Looking, gate: Gate, st: StepRun) -> None:
    """Never called: mypy proves none of these lines type-checks."""
    w.scope.commands("db1")  # type: ignore[attr-defined]
    w.scope.mha.start("masterha_manager")  # type: ignore[attr-defined]
    w.scope.mha.stop("masterha_stop")  # type: ignore[attr-defined]
    w.scope.shell("db1")  # type: ignore[attr-defined]
    w.scope.sql("db1").execute(Sql("SET GLOBAL read_only = OFF"))  # type: ignore[attr-defined]
    w.scope.remember(lambda m: m)  # type: ignore[attr-defined]


def _a_performer(w: Waiter, gate: Restarted, st: StepRun) -> None:
    w.scope.commands("db1").execute(Sql("SET GLOBAL read_only = OFF"))


def _registering() -> None:
    """Never called: an evaluator must take the looking view, not the whole run."""
    evaluators: dict[type[Gate], Evaluator] = {Restarted: _a_gate_that_would_write}
    evaluators[Restarted] = _a_performer  # type: ignore[assignment]


def _public(cls: type[Any]) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}


def test_the_reader_takes_no_statement_and_the_commands_send_only_what_they_are_given() -> None:
    # The real adapters are exactly their ports (nothing that could write hides in a reader).
    assert _public(PyMysqlReader) - {"session"} == _public(MysqlReader)
    assert _public(PyMysqlCommands) - {"session"} == _public(MysqlCommands) == {"execute", "name"}
    for name in _public(MysqlReader) - {"name"}:
        params = inspect.signature(getattr(MysqlReader, name)).parameters.values()
        assert not any("Sql" in str(p.annotation) for p in params), name


def test_every_evaluator_is_typed_to_only_look() -> None:
    for gate, evaluator in EVALUATORS.items():
        first = next(iter(inspect.signature(evaluator).parameters.values()))
        assert first.annotation in ("Looking", Looking), (gate, evaluator)
