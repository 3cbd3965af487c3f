"""The code keeps a readable shape: no class over ~300 lines, no function over ~60.

A unit that grows past these limits is doing more than one job (issue #11). Exceptions are
named here with why; anything else failing this test should be split, not added here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "harestart"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60

# "module:qualified name" -> why it may stay longer.
EXEMPT: dict[str, str] = {}


Unit = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _units(tree: ast.Module) -> list[tuple[str, Unit, int]]:
    out: list[tuple[str, Unit, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                limit = MAX_CLASS_LINES if isinstance(child, ast.ClassDef) else MAX_FUNCTION_LINES
                out.append((name, child, limit))
                walk(child, name + ".")

    walk(tree, "")
    return out


def _length(node: Unit) -> int:
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return (node.end_lineno or node.lineno) - start + 1


def test_no_class_or_function_is_too_long() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        for name, node, limit in _units(ast.parse(path.read_text(encoding="utf-8"))):
            key = f"{module}:{name}"
            if key not in EXEMPT and _length(node) > limit:
                too_long.append(f"{key}: {_length(node)} lines (limit {limit})")
    assert not too_long, "split these (or name them in EXEMPT with why):\n" + "\n".join(too_long)


def test_every_exemption_is_still_needed() -> None:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        for name, node, limit in _units(ast.parse(path.read_text(encoding="utf-8"))):
            if _length(node) > limit:
                found.add(f"{module}:{name}")
    assert not set(EXEMPT) - found, f"no longer too long, drop from EXEMPT: {set(EXEMPT) - found}"
