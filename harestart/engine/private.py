"""Owner-only files and directories for everything harestart writes (logs, journals, locks)."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create ``path`` and every missing parent as 0700 (existing directories are left alone).

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last directory only; the
    parents it creates on the way get the umask's default, which lets others list file names.
    """
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # the mode passed to mkdir is masked by the umask
    return path


def safe_name(text: str) -> str:
    """``text`` as a file name part: letters, digits, ``.``, ``_`` and ``-`` kept, anything
    else ``_`` (group ids and accounts come from the inventory)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
