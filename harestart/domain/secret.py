"""A value that never renders: ``str``, ``repr``, f-strings, JSON and logs all show ``***``."""

from __future__ import annotations

import threading
from typing import Any, Final

MASK: Final = "***"

# Every secret value ever wrapped, so log and output scrubbing can catch a value that escaped
# its wrapper (e.g. echoed back inside a server's error message). Secrets are wrapped from any
# thread (parallel groups, API requests) while others log: adding holds the lock and publishes
# a new tuple, which scrub reads without it (every log record scrubs its strings).
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_SNAPSHOT: tuple[str, ...] = ()


def _remember(value: str) -> None:
    global _SNAPSHOT  # noqa: PLW0603 - replaced whole, read without the lock
    with _KNOWN_LOCK:
        if value not in _KNOWN:
            _KNOWN.add(value)
            _SNAPSHOT = tuple(_KNOWN)


def remembered() -> frozenset[str]:
    with _KNOWN_LOCK:
        return frozenset(_KNOWN)


def forget_all_but(keep: frozenset[str]) -> None:
    """Forget the secrets wrapped since ``remembered()`` gave ``keep`` (unit-test isolation)."""
    global _SNAPSHOT  # noqa: PLW0603 - see _remember
    with _KNOWN_LOCK:
        _KNOWN.intersection_update(keep)
        _SNAPSHOT = tuple(_KNOWN)


def scrub(text: str) -> str:
    """Replace every known secret value inside ``text`` with ``***``."""
    for value in _SNAPSHOT:
        if value in text:
            text = text.replace(value, MASK)
    return text


class Secret:
    """Wraps a password or key material. Only ``reveal()`` returns the value, at the adapter."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:  # very short values would mangle ordinary text
            _remember(value)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would copy the value somewhere we don't control
        raise TypeError("Secret values cannot be pickled")

    def __bool__(self) -> bool:
        return bool(self._value)
