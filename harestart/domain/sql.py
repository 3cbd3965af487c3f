"""A statement and its values, kept apart until the driver: no value is pasted into SQL text.

``Sql`` is what harestart sends to a server: ``text`` in the driver's ``format`` parameter
style (one ``%s`` per value, ``%%`` for a percent sign) and ``args``, the values. The adapter
hands both to the driver (``cursor.execute(text, args)``), which quotes each value for the
server it talks to (pymysql escapes per the session's ``sql_mode``). The plan shows the same
object as text (``shown()``), each value written by ``literal``, a secret as ``'***'``: what
is printed is built by the same function as what is sent.

Only names harestart chose itself (a global variable it sets) are part of the text, checked
by ``identifier``.

A plan is built before the run sees the servers, so a statement may hold a ``Slot``: a value
only the run can know (a thread id to end, a value read before a change), shown ``<what>``.
The performer fills exactly its slots (``fill``) and sends the result; a statement with a slot
left is never sent (``driver_args`` refuses it).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from harestart.domain.secret import MASK, Secret

SqlValue = str | int | float | Secret


@dataclass(frozen=True)
class Slot:
    """A value of a statement only known at run time, filled by ``Sql.fill``.

    Shown ``<what>``; a ``secret`` slot (a password) is shown as a secret value is, ``'***'``.
    With ``words``, the slot stands for one of these keywords of the statement itself
    (``ON``/``OFF``), written into its text when filled, not sent as a value."""

    what: str
    words: tuple[str, ...] = ()
    secret: bool = False
    key: str = ""  # tells apart slots shown alike (read_only's and super_read_only's value)

    def shown(self) -> str:
        return f"'{MASK}'" if self.secret else f"<{self.what}>"


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MARK = re.compile(r"%(.?)", re.DOTALL)
# MySQL's string escapes in its default sql_mode (no NO_BACKSLASH_ESCAPES): the table of
# pymysql.converters.escape_string, so a shown literal is the one the driver sends.
_ESCAPES = str.maketrans(
    {"\0": "\\0", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"'}
)


def literal(value: SqlValue | Slot) -> str:
    """``value`` as a MySQL literal, for showing a statement (never for building one to send).

    Contract: a string becomes a single-quoted literal that MySQL, in its default
    ``sql_mode``, reads back as exactly the same characters; it is the text pymysql sends for
    it then. An integer is its decimal digits; a float the shortest text that reads back as
    the same number (``0`` for 0.0: pymysql sends ``0.0e0``, the same value). A ``Secret`` is
    ``'***'``, never its value; a ``Slot`` is shown as it says. Booleans are refused (write
    ``ON``/``OFF`` in the text).
    """
    if isinstance(value, Secret):
        return f"'{MASK}'"
    if isinstance(value, Slot):
        return value.shown()
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
    args: tuple[SqlValue | Slot, ...] = ()

    def __post_init__(self) -> None:
        marks = _MARK.findall(self.text)
        if any(m not in ("s", "%") for m in marks):
            raise ValueError(f"only %s and %% may follow a % sign: {self.text!r}")
        if sum(m == "s" for m in marks) != len(self.args):
            raise ValueError(f"{len(self.args)} values for the placeholders of {self.text!r}")
        if any(isinstance(a, bool) or not isinstance(a, SqlValue | Slot) for a in self.args):
            raise TypeError(f"not an SQL value among the arguments of {self.text!r}")
        if any(isinstance(a, float) and not math.isfinite(a) for a in self.args):
            raise ValueError(f"not a finite number among the arguments of {self.text!r}")

    def shown(self) -> str:
        """The statement as text, each value written by ``literal`` (a secret as ``'***'``)."""
        return self.text % tuple(literal(a) for a in self.args)

    def __str__(self) -> str:
        return self.shown()

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The values still to be filled at run time."""
        return tuple(a for a in self.args if isinstance(a, Slot))

    def fill(self, values: Mapping[Slot, SqlValue]) -> Sql:
        """This statement with each of its slots filled from ``values`` (a keyword slot with
        one of its words, into the text). ValueError when a slot has no value or a keyword
        is not one of its slot's words; values for other slots are ignored."""
        pieces = _PIECE.split(self.text)
        text: list[str] = []
        args: list[SqlValue | Slot] = []
        given = iter(self.args)
        for piece in pieces:
            if piece != "%s":
                text.append(piece)
                continue
            arg = next(given)
            if isinstance(arg, Slot):
                if arg not in values:
                    raise ValueError(f"no value for <{arg.what}> in {self.shown()!r}")
                value = values[arg]
                if arg.words:
                    if value not in arg.words:
                        raise ValueError(f"<{arg.what}> must be one of {', '.join(arg.words)}")
                    text.append(str(value).replace("%", "%%"))
                    continue
                arg = value
            text.append("%s")
            args.append(arg)
        return Sql("".join(text), tuple(args))

    def admits(self, sent: Sql) -> bool:
        """Whether ``sent`` is this statement with its slots filled (with one of its words,
        for a keyword slot); without slots, whether it is this statement."""
        plain = [a for a in self.args if not (isinstance(a, Slot) and a.words)]
        if len(plain) != len(sent.args):
            return False
        values: dict[Slot, SqlValue] = {}
        for arg, value in zip(plain, sent.args, strict=True):
            if isinstance(value, Slot):
                return False
            if isinstance(arg, Slot):
                values[arg] = value
        keywords = [a for a in self.args if isinstance(a, Slot) and a.words]
        for words in itertools.product(*(k.words for k in keywords)):
            if self.fill({**values, **dict(zip(keywords, words, strict=True))}) == sent:
                return True
        return False

    def driver_args(self) -> tuple[str | int | float, ...]:
        """The values for the driver, secrets revealed: for the adapter's ``execute`` only.
        ValueError for a statement with a slot not filled (it must never be sent)."""
        if self.slots:
            raise ValueError(f"not filled before it is sent: {self.shown()!r}")
        out: list[str | int | float] = []
        for a in self.args:
            if isinstance(a, Slot):  # pragma: no cover - refused above
                raise AssertionError(a)
            out.append(a.reveal() if isinstance(a, Secret) else a)
        return tuple(out)

    def logged_args(self) -> list[str | int | float]:
        """The values for a log event, a secret as ``***``, a slot as ``<what>``."""
        return [
            MASK if isinstance(a, Secret) else a.shown() if isinstance(a, Slot) else a
            for a in self.args
        ]


# A statement's text cut at its marks (kept): "%s" and "%%" pieces, and the text between.
_PIECE = re.compile(r"(%.)", re.DOTALL)


__all__ = ["Slot", "Sql", "SqlValue", "identifier", "literal"]
