"""Safe YAML loading that remembers where every value came from.

``yaml.safe_load`` loses line numbers and happily expands alias bombs. Here the document is
composed into nodes (no object construction at all), then converted by hand with a budget on
the number of nodes visited, so "billion laughs" documents are rejected quickly, duplicate keys
are reported, and every value's line is kept for error messages.

Inventories may use anchors and aliases (within the node budget); a caller that wants none
(the API tokens file) passes ``aliases=False``, and ``hide_keys=True`` keeps mapping keys (there:
the tokens themselves) out of every message, which then rely on the line number alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 50_000

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """The plain Python data of a YAML document, and its nodes to find any value's line."""

    data: Any
    root: yaml.Node | None = None
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    hide_keys: bool = False  # messages never show a mapping key (it may be a secret)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor (looked up only for messages).

        A mapping key's own line is used for a key path, so "unknown key" points at the key.
        """
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                found = next(((k, v) for k, v in node.value if k.value == part), None)
                if found is None:
                    break
                line = found[0].start_mark.line + 1
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


# libyaml's parser when PyYAML has it (10x faster on big inventories); same nodes and marks.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


class YamlProblem(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(message)


def load_located(text: str, *, aliases: bool = True, hide_keys: bool = False) -> Located:
    """Parse ``text``; raise YamlProblem for documents that cannot be used at all.

    Problems that still let the rest be read (duplicate keys, tags, merge keys, and anchors or
    aliases when ``aliases`` is False) are collected in ``Located.problems`` with their lines.
    """
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise YamlProblem(None, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlProblem(line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem(None, "the file is empty")
    located = Located(data=None, root=node, hide_keys=hide_keys)
    if not aliases:
        located.problems.extend(_anchor_problems(text))
    budget = _Budget(MAX_NODES)
    located.data = _convert(node, (), located, budget, yaml.SafeLoader(""))
    if budget.left < 0:
        raise YamlProblem(
            None,
            f"the document expands to more than {MAX_NODES} values "
            "(YAML aliases nested too deep: refusing a possible alias bomb)",
        )
    return located


def _anchor_problems(text: str) -> list[tuple[int | None, str]]:
    """Every anchor (``&name``) and alias (``*name``), from the parser's events (the composed
    nodes no longer tell an alias from the node it names)."""
    problems: list[tuple[int | None, str]] = []
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            kind = "aliases (*)" if isinstance(event, yaml.AliasEvent) else "anchors (&)"
            line = event.start_mark.line + 1 if event.start_mark else None
            problems.append((line, f"YAML {kind} are not allowed here"))
    return problems


def _convert(
    node: yaml.Node, path: Path_, out: Located, budget: _Budget, constructor: yaml.SafeLoader
) -> Any:
    if not budget.spend():
        return None
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
        out.problems.append(
            (
                node.start_mark.line + 1,
                f"{_where(path, out)}unsupported YAML value (tag {node.tag})",
            )
        )
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                out.problems.append(
                    (key_node.start_mark.line + 1, "'<<' merge keys are not supported")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                out.problems.append(
                    (key_node.start_mark.line + 1, "mapping keys must be plain strings")
                )
                continue
            key = key_node.value
            if key in result:
                shown = "" if out.hide_keys else f" {key!r}"
                out.problems.append(
                    (
                        key_node.start_mark.line + 1,
                        f"{_where((*path, key), out)}duplicate key{shown}",
                    )
                )
            result[key] = _convert(value_node, (*path, key), out, budget, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, i), out, budget, constructor)
            for i, item in enumerate(node.value)
        ]
    if node.tag == "tag:yaml.org,2002:str":  # the common case, without the generic machinery
        return node.value
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        out.problems.append(
            (node.start_mark.line + 1, f"{_where(path, out)}unsupported YAML value ({exc.problem})")
        )
        return None


def _where(path: Path_, out: Located) -> str:
    """The path as a message prefix (``groups[0].name: ``), or nothing when keys are hidden."""
    return "" if out.hide_keys else f"{_dotted(path)}: "


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


dotted = _dotted
