"""File names of a group's lock and journal: injective in (account, group), readable.

``<account>+<group><suffix>``, each part percent-encoded (``urllib.parse.quote``) with only
letters, digits, ``.``, ``_``, ``-`` and ``~`` left as they are: the separator ``+`` never
appears inside an encoded part and decoding gives the part back, so two different (account,
group) pairs never share a file. Ordinary ids stay as they are (``1234+orders.lock``); a
``:`` becomes ``%3A`` (group ``x:y`` -> ``x%3Ay``, group ``x_y`` -> ``x_y``).

A name that would pass ``MAX_NAME`` keeps a readable prefix and ends in ``#`` and the SHA-256 of
the pair (``#`` is encoded in every short name, so short and long names never meet).

Before this, names were ``<account>-<group>`` with every other character replaced by ``_``
(``legacy_name``): ``x:y`` and ``x_y``, or account ``a`` + group ``b-c`` and account ``a-b`` +
group ``c``, shared one file. Those names are still looked at for a journal, which records its
account and group, so an old file is taken only by the group it names (``engine.state.journal``).
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_NAME = 200  # bytes; file systems allow 255, and the journal's temporary name adds some


def state_name(account: str, group: str, suffix: str) -> str:
    """The file name of the group's lock (``.lock``) or journal (``.json``)."""
    name = f"{_part(account)}+{_part(group)}"
    if len(name) + len(suffix) <= MAX_NAME:
        return name + suffix
    digest = hashlib.sha256(f"{account}\0{group}".encode()).hexdigest()
    return f"{name[: MAX_NAME - len(suffix) - len(digest) - 1]}#{digest}{suffix}"


def legacy_name(account: str, group: str, suffix: str) -> str:
    """The name an earlier harestart gave the file (not injective: read-only, checked)."""
    return f"{_legacy_part(account)}-{_legacy_part(group)}{suffix}"


def _part(text: str) -> str:
    return quote(text, safe="")


def _legacy_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
