"""An operator's mark: "this node (or this whole group) needs a restart", for reasons harestart
cannot see (#23). Pure data, checked on the way in and on the way back: the reason is bounded
and printable, and a record read back from disk or from a coordination service is parsed into
an ``OperatorMark`` (anything else is refused, never half-read).

A mark's text is shown (status, plan, API, metrics label ``reason="mark"``); it is never put in
a statement or a shell command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from harestart.domain.pending.model import PendingReport, Reason, ReasonKind

MAX_REASON = 200  # characters of a mark's reason
MAX_FIELD = 255  # characters of the other fields (a node name, user@host, an instant)
MAX_MARKS = 100  # marks per group: a record with more is refused


class MarkRefused(ValueError):
    """A reason, or a stored record, that is not a mark."""


def check_text(what: str, text: str, limit: int) -> str:
    """``text`` when it is 1..limit printable characters (no newline, no control character);
    MarkRefused naming ``what`` otherwise (never echoing the text)."""
    if not text.strip():
        raise MarkRefused(f"{what} is empty")
    if len(text) > limit:
        raise MarkRefused(f"{what} has {len(text)} characters, at most {limit} are allowed")
    if not text.isprintable():
        raise MarkRefused(f"{what} holds a control character or a line break (printable text only)")
    return text


@dataclass(frozen=True)
class OperatorMark:
    """``node`` None: the whole group. ``user``/``host``: who marked it, ``at``: when (UTC,
    ISO 8601)."""

    node: str | None
    reason: str
    user: str
    host: str
    at: str

    def __post_init__(self) -> None:
        check_text("the reason", self.reason, MAX_REASON)
        if self.node is not None:
            check_text("the node name", self.node, MAX_FIELD)
        for what, value in (
            ("the user", self.user),
            ("the host", self.host),
            ("the time", self.at),
        ):
            check_text(what, value, MAX_FIELD)

    def applies_to(self, node: str) -> bool:
        return self.node is None or self.node == node

    def as_reason(self) -> Reason:
        scope = "the whole group" if self.node is None else "this node"
        return Reason(
            ReasonKind.MARK,
            self.node or "group",
            f"{scope} marked by {self.user}@{self.host} at {self.at}: {self.reason}",
        )

    def describe(self) -> str:
        where = "whole group" if self.node is None else f"node {self.node}"
        return f"{where}: {self.reason} (by {self.user}@{self.host} at {self.at})"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "node": self.node,
            "reason": self.reason,
            "user": self.user,
            "host": self.host,
            "at": self.at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: object) -> OperatorMark:
        """A stored record; MarkRefused for anything that is not exactly a mark."""
        if not isinstance(d, dict) or set(d) != {"node", "reason", "user", "host", "at"}:
            raise MarkRefused("not a mark record (fields node, reason, user, host, at)")
        node = d["node"]
        texts = [d[k] for k in ("reason", "user", "host", "at")]
        if (node is not None and not isinstance(node, str)) or not all(
            isinstance(t, str) for t in texts
        ):
            raise MarkRefused("a mark record's fields are text (node: text or null)")
        return cls(node, *texts)

    @classmethod
    def from_json(cls, text: str) -> OperatorMark:
        if len(text) > 4 * (MAX_REASON + 4 * MAX_FIELD):
            raise MarkRefused("a mark record too long")
        try:
            d = json.loads(text)
        except ValueError:
            raise MarkRefused("a mark record that is not JSON") from None
        return cls.from_dict(d)


def parse_marks(doc: object) -> tuple[OperatorMark, ...]:
    """The marks of a group's record (``{"marks": [...]}``), at most ``MAX_MARKS``."""
    if not isinstance(doc, dict) or set(doc) != {"marks"} or not isinstance(doc["marks"], list):
        raise MarkRefused('not a marks file (one field "marks", a list)')
    if len(doc["marks"]) > MAX_MARKS:
        raise MarkRefused(f"{len(doc['marks'])} marks, at most {MAX_MARKS} a group has")
    return tuple(OperatorMark.from_dict(m) for m in doc["marks"])


def marks_document(marks: tuple[OperatorMark, ...]) -> dict[str, list[dict[str, str | None]]]:
    return {"marks": [m.to_dict() for m in marks]}


def cleared(
    marks: tuple[OperatorMark, ...], nodes: frozenset[str] | None
) -> tuple[OperatorMark, ...]:
    """What is left after clearing ``nodes``' marks (None: every mark of the group). Clearing
    a node leaves a whole-group mark alone: that one is cleared with the group."""
    if nodes is None:
        return ()
    return tuple(m for m in marks if m.node is None or m.node not in nodes)


def with_marks(
    report: PendingReport | None, node: str, marks: tuple[OperatorMark, ...]
) -> PendingReport | None:
    """``report`` with a ``mark`` reason per mark that applies to ``node`` (a report made of
    them alone when detection did not run)."""
    reasons = tuple(m.as_reason() for m in marks if m.applies_to(node))
    if not reasons:
        return report
    if report is None:
        return PendingReport(pending_restart=reasons)
    return PendingReport(
        pending_restart=report.pending_restart + reasons, config_drift=report.config_drift
    )
