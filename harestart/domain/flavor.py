"""The server's flavor (MariaDB or MySQL) and version, as its ``version`` variable says them.

Apart from ``domain.topology`` (which names them too): the plan words and tags every step by
flavor, and needs none of topology's row parsers (``plan`` imports this alone).
"""

from __future__ import annotations

import enum
import re


class Flavor(enum.Enum):
    MARIADB = "mariadb"
    MYSQL = "mysql"


def flavor_from_version(version: str) -> Flavor:
    """``10.11.6-MariaDB-0+deb12u1`` -> MARIADB; ``8.0.36``, ``8.4.0-log`` -> MYSQL."""
    return Flavor.MARIADB if "mariadb" in version.lower() else Flavor.MYSQL


_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def version_tuple(version: str) -> tuple[int, int, int]:
    """``10.11.6-MariaDB-0+deb12u1`` -> (10, 11, 6); ``5.5.5-10.6.1-MariaDB`` -> (10, 6, 1)."""
    text = version.strip()
    if text.startswith("5.5.5-") and "mariadb" in text.lower():
        text = text.removeprefix("5.5.5-")  # MariaDB's replication-compat prefix
    match = _VERSION_RE.match(text)
    if not match:
        raise ValueError(f"unrecognised server version {version!r}")
    return (int(match[1]), int(match[2]), int(match[3] or 0))
