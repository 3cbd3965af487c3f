"""Why a node needs a restart: typed reasons and one node's report. Pure data.

A reason names what (a variable, a file, a package) and why, in one sentence for people, with
the configured and the running value where there are values. ``pending_restart`` holds what
only a restart of mysqld changes; ``config_drift`` what was changed at run time and differs
from the configuration (a restart would change it back, but none is needed for it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harestart.domain.secret import MASK


class ReasonKind(enum.Enum):
    # An option file (or mysqld's command line) says another value than the one running.
    CONFIG = "config"
    # MySQL: SET PERSIST / SET PERSIST_ONLY stored another value than the one running.
    PERSISTED = "persisted"
    # The executable mysqld runs was deleted or replaced on disk (a package upgrade).
    BINARY = "binary"
    # A shared library mysqld maps was deleted or replaced on disk (a libssl update).
    LIBRARY = "library"
    # The installed server package is another version than the one running.
    PACKAGE = "package"
    # An operator marked the node for reasons harestart cannot see.
    MARK = "mark"
    # harestart could not tell (no /proc access, an unreadable option file...): never read
    # as "nothing pending".
    UNKNOWN = "unknown"


# A variable whose name says it holds a secret: its values never leave the node.
_SECRET_WORDS = ("password", "passwd", "secret")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@dataclass(frozen=True)
class Reason:
    """One reason. ``subject``: the variable, path or package it is about ("" for none);
    ``configured``: the option file's (or the persisted) value as written; ``running``: the
    server's value; ``text``: the sentence for people (it names the values too)."""

    kind: ReasonKind
    subject: str
    text: str
    configured: str | None = None
    running: str | None = None

    def describe(self) -> str:
        return f"{self.kind.value}: {self.text}"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "configured": self.configured,
            "running": self.running,
            "text": self.text,
        }


def shown(name: str, value: str | None) -> str | None:
    """A value as a reason may carry it: ``***`` for a variable named like a secret."""
    if value is None:
        return None
    return MASK if is_secret_name(name) else value


@dataclass(frozen=True)
class PendingReport:
    """What detection found on one node: restarts pending and drift, each in its own list."""

    pending_restart: tuple[Reason, ...] = ()
    config_drift: tuple[Reason, ...] = ()

    @property
    def pending(self) -> bool:
        """A restart is pending, or harestart could not tell (an ``unknown`` reason)."""
        return bool(self.pending_restart)

    @property
    def unknown(self) -> bool:
        return any(r.kind is ReasonKind.UNKNOWN for r in self.pending_restart)

    def describe(self) -> str:
        if not self.pending_restart:
            return "nothing pending"
        return "; ".join(r.describe() for r in self.pending_restart)

    def to_dict(self) -> dict[str, list[dict[str, str | None]]]:
        return {
            "pending_restart": [r.to_dict() for r in self.pending_restart],
            "config_drift": [r.to_dict() for r in self.config_drift],
        }


def unknown(subject: str, text: str) -> Reason:
    return Reason(ReasonKind.UNKNOWN, subject, text)


def unknown_report(text: str, subject: str = "") -> PendingReport:
    """Nothing could be checked: one ``unknown`` reason saying why."""
    return PendingReport(pending_restart=(unknown(subject, text),))
