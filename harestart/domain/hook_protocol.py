"""The persistent hook mode's protocol: JSON lines on a program's stdin and stdout. Pure.

``hooks: {mode: persistent}`` starts a hook program once per run (at the first event that
names it) instead of a process per event, as git's long-running filter processes do
(``gitattributes(5)``, "Long Running Filter Process"): a handshake first, with a version and
the capabilities both sides agree on, then one request and one answer at a time, and the end
of the input as the signal to exit. Here every message is one line of JSON (UTF-8, at most
``MAX_LINE_BYTES``) instead of git's pkt-lines:

1. harestart: ``{"harestart-hook": 1, "capabilities": ["before_node_restart", ...]}``: the
   protocol's version and the points this program will get (the group's persistent hooks
   naming it). The program: ``{"harestart-hook": 1, "capabilities": [...]}``, the points it
   handles; one missing, or another version, and the program is refused (its event fails).
2. each event: ``{"id": 1, "point": "after_switch", "account": ..., "group": ..., "run_id":
   ..., "node": ..., "node_host": ..., "role": ..., "old_source": ..., "new_source": ...,
   "strategy": ...}`` (the facts a per-event hook gets as ``HARESTART_*`` variables, and the
   event's number in this program's life), answered by ``{"id": 1, "ok": true}`` or ``{"id":
   1, "ok": false, "message": "why"}`` within the point's timeout. The id echoed is what ties
   an answer to its event: a program that answered one event twice would otherwise have its
   extra line taken for the next event's answer (JSON-RPC's id, where git relies on strict
   turns alone). Unknown keys are ignored both ways (a later version may add some).
3. at the end of the run harestart closes the program's stdin: it exits.

The program writes nothing else on stdout (its logs go to stderr, which harestart keeps the
end of, like a per-event hook's output). An answer that does not come in time, a program that
exits, or a line that is not such an answer fails the event, and the program is stopped: the
next event of the same run finds it stopped and fails too (a run stops at its first failed
step anyway; ``resume`` starts a new program).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harestart.domain.group import HookPoint

VERSION = 1
HELLO_KEY = "harestart-hook"
MAX_LINE_BYTES = 65536  # an answer line longer than this is refused (never buffered on)
SHOWN_CHARS = 200  # how much of a malformed answer a failure quotes
MESSAGE_CHARS = 1000  # how much of a program's own message (``ok: false``) a failure quotes


def hello(points: Sequence[HookPoint]) -> str:
    """harestart's first line to a program that will get events at ``points``."""
    return json.dumps({HELLO_KEY: VERSION, "capabilities": [p.value for p in points]})


def event_line(event_id: int, event: dict[str, str]) -> str:
    """Event number ``event_id`` (``harestart.domain.hooks.hook_event``) as the line sent."""
    return json.dumps({"id": event_id, **event})


@dataclass(frozen=True)
class Exchange:
    """What came back for one line sent (the adapter's report, judged here).

    ``answer``: the line read, without its newline (None: none came). Otherwise
    ``timed_out``, or ``exit_status`` (the program ended; negative: killed by that signal),
    or ``problem`` (what else went wrong on the pipes). ``output``: the end of the program's
    stderr written since the previous exchange (not scrubbed here)."""

    answer: str | None
    duration_s: float
    output: str = ""
    timed_out: bool = False
    exit_status: int | None = None
    problem: str | None = None


class Ending(enum.Enum):
    """How an event (or a hello) ended."""

    OK = "ok"  # {"ok": true}
    ERROR = "error"  # {"ok": false, "message": ...}: the program works, the event failed
    DIED = "died"  # the program ended instead of answering
    MALFORMED = "malformed"  # a line that is not the protocol's answer, or broken pipes
    TIMED_OUT = "timed_out"  # no answer within the timeout
    UNAVAILABLE = "unavailable"  # not sent: the program was stopped after an earlier failure


@dataclass(frozen=True)
class EventOutcome:
    """One event sent to a persistent program (what ``HookOutcome`` is for a per-event hook).
    ``message``: the program's own (ERROR) or what was wrong; ``output``: the end of its
    stderr since its previous answer, never scrubbed here."""

    command: str
    ending: Ending
    duration_s: float
    timeout: float
    output: str = ""
    message: str = ""
    exit_status: int | None = None
    during: str = "this event"  # or "its hello"

    @property
    def ok(self) -> bool:
        return self.ending is Ending.OK

    @property
    def timed_out(self) -> bool:
        return self.ending is Ending.TIMED_OUT

    @property
    def broken(self) -> bool:
        """The program cannot be trusted with another event (it is stopped)."""
        return self.ending not in (Ending.OK, Ending.ERROR)

    def status_text(self) -> str:
        took = f"after {self.duration_s:.1f} s"
        match self.ending:
            case Ending.OK:
                return f"answered ok {took}"
            case Ending.ERROR:
                return f"answered error {took}: {self.message or '(no message)'}"
            case Ending.DIED:
                return f"{_ended(self.exit_status)} before answering {self.during}"
            case Ending.TIMED_OUT:
                return (
                    f"did not answer {self.during} within {self.timeout:g} s "
                    "(the program was stopped)"
                )
            case Ending.MALFORMED:
                return f"answered {self.during} outside the protocol: {self.message}"
        return self.message  # UNAVAILABLE


def _ended(status: int | None) -> str:
    if status is None:
        return "ended"
    return f"was killed by signal {-status}" if status < 0 else f"exited {status}"


def _outcome(
    command: str,
    x: Exchange,
    timeout: float,
    ending: Ending,
    during: str,
    message: str = "",
) -> EventOutcome:
    return EventOutcome(
        command=command,
        ending=ending,
        duration_s=x.duration_s,
        timeout=timeout,
        output=x.output,
        message=message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS] + " [...]",
        exit_status=x.exit_status,
        during=during,
    )


def _no_answer(command: str, x: Exchange, timeout: float, during: str) -> EventOutcome:
    """The outcome when no line came back."""
    if x.timed_out:
        return _outcome(command, x, timeout, Ending.TIMED_OUT, during)
    if x.exit_status is not None:
        return _outcome(command, x, timeout, Ending.DIED, during)
    return _outcome(command, x, timeout, Ending.MALFORMED, during, x.problem or "no answer")


def _parse(line: str) -> dict[str, Any] | str:
    """The line as a JSON object, or why it is not one."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can read
        return f"not JSON: {_shown(line)}"
    if not isinstance(value, dict):
        return f"not a JSON object: {_shown(line)}"
    return value


def _shown(line: str) -> str:
    cut = line[:SHOWN_CHARS]
    return repr(cut) + (f" (cut at {SHOWN_CHARS} of {len(line)} characters)" if cut != line else "")


def answer_outcome(command: str, x: Exchange, timeout: float, event_id: int) -> EventOutcome:
    """Judge the exchange of event ``event_id``: ``{"id": event_id, "ok": true}`` or
    ``{"id": event_id, "ok": false, "message": ...}``."""
    during = "this event"
    if x.answer is None:
        return _no_answer(command, x, timeout, during)
    value = _parse(x.answer)
    if isinstance(value, str):
        return _outcome(command, x, timeout, Ending.MALFORMED, during, value)
    ok, message, answered = value.get("ok"), value.get("message", ""), value.get("id")
    if not isinstance(ok, bool) or not isinstance(message, str):
        why = (
            f'expected {{"id": {event_id}, "ok": true}} or {{"id": {event_id}, "ok": false, '
            f'"message": "..."}}, got {_shown(x.answer)}'
        )
        return _outcome(command, x, timeout, Ending.MALFORMED, during, why)
    if answered != event_id or isinstance(answered, bool):
        why = (
            f'no "id" in the answer (this event\'s is {event_id})'
            if answered is None
            else f"an answer to event {json.dumps(answered)[:SHOWN_CHARS]}, not to {event_id}"
        )
        return _outcome(command, x, timeout, Ending.MALFORMED, during, why)
    return _outcome(command, x, timeout, Ending.OK if ok else Ending.ERROR, during, message)


def hello_outcome(
    command: str, x: Exchange, timeout: float, points: Sequence[HookPoint]
) -> EventOutcome | None:
    """Judge the program's answer to ``hello(points)``: None when it speaks this version and
    handles every point; otherwise the failed outcome (its event fails, it is stopped)."""
    during = "its hello"
    if x.answer is None:
        return _no_answer(command, x, timeout, during)
    why = _hello_problem(x.answer, points)
    return None if why is None else _outcome(command, x, timeout, Ending.MALFORMED, during, why)


def _hello_problem(answer: str, points: Sequence[HookPoint]) -> str | None:
    value = _parse(answer)
    if isinstance(value, str):
        return value
    version, capabilities = value.get(HELLO_KEY), value.get("capabilities")
    if version != VERSION:
        shown = json.dumps(version)[:SHOWN_CHARS]
        return f'its "{HELLO_KEY}" is {shown}, not {VERSION} (the version harestart speaks)'
    if not isinstance(capabilities, list):
        return f'no "capabilities" list: {_shown(answer)}'
    missing = [p.value for p in points if p.value not in capabilities]
    if not missing:
        return None
    handled = ", ".join(str(c) for c in capabilities)[:SHOWN_CHARS] or "none"
    return f"it does not handle {', '.join(missing)} (its capabilities: {handled})"


def unavailable(command: str, timeout: float, earlier: EventOutcome) -> EventOutcome:
    """An event not sent: the program was stopped after ``earlier`` failed."""
    why = earlier.status_text()
    message = f"not sent: the program was stopped after an earlier failure ({why})"
    return EventOutcome(command=command, ending=Ending.UNAVAILABLE, duration_s=0.0,
                        timeout=timeout, message=message)  # fmt: skip
