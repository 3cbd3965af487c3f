"""A statement and its values, kept apart until the driver: no value is pasted into SQL text.

``Sql`` is what harestart sends to a server: ``text`` in the driver's ``format`` parameter
style (one ``%s`` per value, ``%%`` for a percent sign) and ``args``, the values. The adapter
hands both to the driver (``cursor.execute(text, args)``), which quotes each value for the
server it talks to (pymysql escapes per the session's ``sql_mode``). The plan shows the same
object as text (``shown()``), each value written by ``literal``, a secret as ``'***'``: what
is printed is built by the same function as what is sent.

Only names harestart chose itself (a global variable it sets) are part of the text, checked
by ``identifier``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harestart.domain.secret import MASK, Secret

SqlValue = str | int | float | Secret

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MARK = re.compile(r"%(.?)", re.DOTALL)
# MySQL's string escapes in its default sql_mode (no NO_BACKSLASH_ESCAPES): the table of
# pymysql.converters.escape_string, so a shown literal is the one the driver sends.
_ESCAPES = str.maketrans(
    {"\0": "\\0", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"'}
)


def literal(value: SqlValue) -> str:
    """``value`` as a MySQL literal, for showing a statement (never for building one to send).

    Contract: a string becomes a single-quoted literal that MySQL, in its default
    ``sql_mode``, reads back as exactly the same characters; it is the text pymysql sends for
    it then. An integer is its decimal digits; a float the shortest text that reads back as
    the same number (``0`` for 0.0: pymysql sends ``0.0e0``, the same value). A ``Secret`` is
    ``'***'``, never its value. Booleans are refused (write ``ON``/``OFF`` in the text).
    """
    if isinstance(value, Secret):
        return f"'{MASK}'"
    if isinstance(value, bool):
        raise TypeError("a boolean is not an SQL value here: write ON/OFF in the statement")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return "'" + value.translate(_ESCAPES) + "'"


def identifier(name: str) -> str:
    """``name`` if it is a plain identifier (``innodb_max_dirty_pages_pct``), else ValueError:
    the only words of a statement harestart does not write itself must be these."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class Sql:
    """One statement as sent: ``text`` with a ``%s`` per value of ``args`` (see the module)."""

    text: str
    args: tuple[SqlValue, ...] = ()

    def __post_init__(self) -> None:
        marks = _MARK.findall(self.text)
        if any(m not in ("s", "%") for m in marks):
            raise ValueError(f"only %s and %% may follow a % sign: {self.text!r}")
        if sum(m == "s" for m in marks) != len(self.args):
            raise ValueError(f"{len(self.args)} values for the placeholders of {self.text!r}")
        if any(isinstance(a, bool) or not isinstance(a, SqlValue) for a in self.args):
            raise TypeError(f"not an SQL value among the arguments of {self.text!r}")
        if any(isinstance(a, float) and not math.isfinite(a) for a in self.args):
            raise ValueError(f"not a finite number among the arguments of {self.text!r}")

    def shown(self) -> str:
        """The statement as text, each value written by ``literal`` (a secret as ``'***'``)."""
        return self.text % tuple(literal(a) for a in self.args)

    def __str__(self) -> str:
        return self.shown()

    def driver_args(self) -> tuple[str | int | float, ...]:
        """The values for the driver, secrets revealed: for the adapter's ``execute`` only."""
        return tuple(a.reveal() if isinstance(a, Secret) else a for a in self.args)

    def logged_args(self) -> list[str | int | float]:
        """The values for a log event, a secret as ``***``."""
        return [MASK if isinstance(a, Secret) else a for a in self.args]


__all__ = ["Sql", "SqlValue", "identifier", "literal"]
