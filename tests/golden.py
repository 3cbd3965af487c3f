"""The golden plans: what each file in tests/data/golden/ is made from.

The unit tests compare each case's output with its file and never write one. When a plan's
content changes on purpose, ``make golden`` (``python -m tests.golden``) writes the files
anew from these same cases; the diff then shows the change for review.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import PlanOptions
from harestart.domain.switch import SourceStrategy
from harestart.inventory.load import load_inventory
from harestart.views.plan import render_json

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
INVENTORIES = REPO / "inventories"


def _plans(inventory: Path, options: PlanOptions | None = None) -> str:
    inv = load_inventory(inventory)
    return render_json([build_plan(g, options) for g in inv.groups]) + "\n"


def _switchover() -> PlanOptions:
    return PlanOptions(source_strategy=SourceStrategy.SWITCHOVER)


# golden file name -> how its content is made
CASES: dict[str, Callable[[], str]] = {
    "plan-lab.json": lambda: _plans(INVENTORIES / "lab.yml"),
    "plan-lab-mysql.json": lambda: _plans(INVENTORIES / "lab-mysql.yml"),
    "plan-example.json": lambda: _plans(INVENTORIES / "example.yml"),
    "plan-lab-switchover.json": lambda: _plans(INVENTORIES / "lab.yml", _switchover()),
    "plan-lab-mysql-switchover.json": lambda: _plans(INVENTORIES / "lab-mysql.yml", _switchover()),
    "plan-hooks.json": lambda: _plans(REPO / "tests" / "data" / "hooks.yml"),
}


def expected(name: str) -> str:
    """The golden file's text, as committed."""
    path = GOLDEN / name
    assert path.exists(), f"{path} missing: run `make golden` and review the diff"
    return path.read_text()


def main() -> int:
    for name, make in CASES.items():
        path = GOLDEN / name
        text = make()
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{'wrote' if changed else 'same '} {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
