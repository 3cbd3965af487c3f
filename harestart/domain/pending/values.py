"""Values as mysqld reads them, so an option file and a running server compare equal when they
mean the same thing: sizes (``1G`` = 1073741824), booleans (``ON`` = ``1`` = ``true``), numbers
(``10`` = ``10.000000``), paths (a trailing slash, ``./`` under the datadir), enumerations and
sets (case, order of a set's members). Pure functions.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal, InvalidOperation


class VarType(enum.Enum):
    """A variable's type as the server reports it (UNKNOWN: it did not say)."""

    BOOL = "bool"
    INT = "int"
    NUMERIC = "numeric"
    ENUM = "enum"
    SET = "set"
    STRING = "string"
    UNKNOWN = "unknown"


# MariaDB information_schema.SYSTEM_VARIABLES.VARIABLE_TYPE and MySQL
# performance_schema.variables_metadata.DATA_TYPE, upper-cased.
_TYPES = {
    "BOOLEAN": VarType.BOOL,
    "INT": VarType.INT,
    "INT UNSIGNED": VarType.INT,
    "BIGINT": VarType.INT,
    "BIGINT UNSIGNED": VarType.INT,
    "INTEGER": VarType.INT,
    "DOUBLE": VarType.NUMERIC,
    "NUMERIC": VarType.NUMERIC,
    "ENUM": VarType.ENUM,
    "ENUMERATION": VarType.ENUM,
    "SET": VarType.SET,
    "FLAGSET": VarType.SET,
    "VARCHAR": VarType.STRING,
    "STRING": VarType.STRING,
}


def var_type(reported: str | None) -> VarType:
    return _TYPES.get((reported or "").strip().upper(), VarType.UNKNOWN)


# The suffixes mysqld's option parser takes for a number: K, M, G, T, P, E (powers of 1024),
# in either case (my_getopt.cc eval_num_suffix).
_SIZE = re.compile(r"\s*([+-]?\d+)\s*([kmgtpe]?)\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

_TRUE = frozenset({"ON", "TRUE", "YES", "1"})
_FALSE = frozenset({"OFF", "FALSE", "NO", "0"})


def option_name(raw: str) -> str:
    """An option's or variable's name as one spelling: lower case, ``_`` for ``-``."""
    return raw.strip().lower().replace("-", "_")


def parse_size(text: str) -> int | None:
    """``64M`` -> 67108864, ``1g`` -> 1073741824, ``100`` -> 100; None if not a number."""
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    return int(match[1]) * (1 << (10 * _POWERS[match[2].lower()]))


def parse_bool(text: str) -> bool | None:
    """ON/OFF, TRUE/FALSE, YES/NO, 1/0 in any case; None for anything else."""
    word = text.strip().upper()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def parse_number(text: str) -> Decimal | None:
    """``10`` and ``10.000000`` alike; a size suffix counts (``1M``); None if no number."""
    size = parse_size(text)
    if size is not None:
        return Decimal(size)
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../"))


def normal_path(text: str, datadir: str = "") -> str:
    """A path as one spelling: relative ones (``./x``, ``x/y``) under ``datadir`` when given,
    ``//`` and ``/./`` collapsed, no trailing slash (``/usr/`` = ``/usr``)."""
    path = text.strip()
    if datadir and not path.startswith("/"):
        path = f"{datadir.rstrip('/')}/{path}"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    absolute = path.startswith("/")
    return ("/" if absolute else "") + "/".join(parts)


def _members(text: str) -> frozenset[str]:
    return frozenset(m.strip().upper() for m in text.split(",") if m.strip())


def same_value(configured: str, running: str, kind: VarType, *, datadir: str = "") -> bool:
    """Whether an option's ``configured`` text means the ``running`` value, for a variable of
    type ``kind``; UNKNOWN tries the readings that fit both values (booleans, numbers, paths,
    words in any case)."""
    if configured.strip() == running.strip():
        return True
    if kind is VarType.BOOL:
        return _same_bool(configured, running)
    if kind in (VarType.INT, VarType.NUMERIC):
        return _same_number(configured, running)
    if kind is VarType.ENUM:
        return configured.strip().upper() == running.strip().upper() or _same_bool(
            configured, running
        )
    if kind is VarType.SET:
        return _members(configured) == _members(running)
    if kind is VarType.STRING:
        return _same_text(configured, running, datadir)
    return (
        _same_bool(configured, running)
        or _same_number(configured, running)
        or _members(configured) == _members(running)
        or _same_text(configured, running, datadir)
    )


def _same_bool(a: str, b: str) -> bool:
    left, right = parse_bool(a), parse_bool(b)
    return left is not None and left == right


def _same_number(a: str, b: str) -> bool:
    left, right = parse_number(a), parse_number(b)
    return left is not None and left == right


def _same_text(a: str, b: str, datadir: str) -> bool:
    if looks_like_path(a) or looks_like_path(b):
        return normal_path(a, datadir) == normal_path(b, datadir)
    return a.strip().casefold() == b.strip().casefold()
