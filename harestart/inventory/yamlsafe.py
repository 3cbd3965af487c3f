"""Safe YAML loading that remembers where every value came from.

``yaml.safe_load`` loses line numbers and happily expands alias bombs. Here the document is
composed into nodes (no object construction at all), then converted by hand: duplicate keys
are reported, every value's line is kept for error messages, and what an alias bomb does is
refused before it costs anything:

- expansion through aliases: each alias counts the values of what it names (its expanded
  size, known without expanding it); more than ``MAX_ALIAS_VALUES`` in all is refused, naming
  the line of the alias that went over. An alias is converted once and shared, like
  ``yaml.safe_load`` does, so a document costs what it holds, not what it expands to;
- an alias inside the value it names (a recursive structure) is refused;
- nesting deeper than ``MAX_DEPTH`` collections is refused (libyaml stops at 1000 by itself).

A plain document of any size passes, up to ``MAX_BYTES`` (a 10,000-group inventory is about
3 MB). Inventories may use anchors and aliases (e.g. shared settings); a caller that wants
none (the API tokens file) passes ``aliases=False``, and ``hide_keys=True`` keeps mapping keys
(there: the tokens themselves) out of every message, which then rely on the line number alone.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 64 * 1024 * 1024  # the largest file read at all
MAX_ALIAS_VALUES = 10_000  # values reached through aliases, in all
MAX_DEPTH = 64  # collections nested in collections

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """The plain Python data of a YAML document, and its text to find any value's line.

    The composed nodes (marks and all: 130 MB for a 10,000-group inventory, against 25 MB of
    data) are let go once converted; the first line asked for composes the text again. Only
    messages ask (problems, warnings), so a valid fleet never pays for it twice.
    """

    data: Any
    text: str = ""
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    hide_keys: bool = False  # messages never show a mapping key (it may be a secret)
    _root: yaml.Node | None = field(default=None, repr=False)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor (looked up only for messages).

        A mapping key's own line is used for a key path, so "unknown key" points at the key.
        """
        if self._root is None and self.text:
            with collector_paused():
                self._root = _compose(self.text)  # it composed once already: no error here
        node = self._root
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


_STR = "tag:yaml.org,2002:str"
_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


_generic_resolve: Callable[..., str] = yaml.resolver.BaseResolver.resolve
# The first characters of every implicit tag's pattern (int, float, bool, null, merge...): a
# plain scalar starting with any other is a string. Only true while nothing resolves by path or
# for any first character, as for PyYAML's safe loaders (tests/unit/test_yamlsafe.py pins it).
_IMPLICIT_FIRST = frozenset(yaml.resolver.Resolver.yaml_implicit_resolvers)


def _resolve(
    self: yaml.resolver.BaseResolver, kind: type[yaml.Node], value: Any, implicit: Any
) -> str:
    """``Resolver.resolve``, the same tags, without its generic walk for the scalars no
    implicit pattern can match (``g1-db2`` is a string; ``10.0.0.1`` still goes through them):
    the composer asks this for every value."""
    if kind is yaml.ScalarNode and (not implicit[0] or (value and value[0] not in _IMPLICIT_FIRST)):
        return _STR
    return _generic_resolve(self, kind, value, implicit)


class _PyLoader(yaml.SafeLoader):
    """PyYAML's own (pure Python) safe loader, resolving as above: used without libyaml."""

    resolve = _resolve


_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = _PyLoader
_NOTHING: dict[Any, Any] = {}
if getattr(yaml, "__with_libyaml__", False):  # PyYAML built with libyaml (its wheels are)

    class _CLoader(yaml.CSafeLoader):
        """libyaml's parser and composer (several times faster on a fleet's inventory): the
        same nodes, tags and marks (line numbers) as ``_PyLoader``."""

        resolve = _resolve
        # The composer calls these two around every node, for path resolvers; the safe
        # loaders have none, so PyYAML's own do nothing. C callables doing nothing instead
        # (6% of composing a fleet's inventory): ``{}.get(parent, index)``, ``tuple()``.
        # PyYAML's own stay should a path resolver ever be added (test_yamlsafe.py pins none).
        if not yaml.SafeLoader.yaml_path_resolvers:
            descend_resolver = staticmethod(_NOTHING.get)  # type: ignore[assignment]  # no self
            ascend_resolver = staticmethod(tuple)  # type: ignore[assignment]  # no self

    _Loader = _CLoader


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large document is read.

    Reading creates a few hundred thousand objects per MB, all still alive; each collection
    the allocations trigger walks every one of them again, which made reading a 10,000-group
    inventory take 2-3 times as long. Nothing is leaked: reference counting still frees
    everything, and the collector is enabled again (if it was) as soon as the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise YamlProblem(
            None, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB, the most read"
        )
    with collector_paused():
        return _load_located(text, aliases=aliases, hide_keys=hide_keys)


def _load_located(text: str, *, aliases: bool, hide_keys: bool) -> Located:
    node = _compose(text)
    located = Located(data=None, text=text, hide_keys=hide_keys)
    if not aliases:
        located.problems.extend(_anchor_problems(text))
    converter = _Converter(located)
    try:
        located.data = converter.convert(node, ())
    except _AliasRefused as exc:
        raise YamlProblem(_alias_line(text, exc.recursive), exc.message) from None
    return located


def _compose(text: str) -> yaml.Node:
    """The document's nodes; YamlProblem when it is no YAML or empty."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlProblem(line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, f"not valid YAML: {exc}") from None
    except RecursionError:  # the pure-Python composer on a deep document (libyaml stops first)
        raise YamlProblem(None, f"values are nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem(None, "the file is empty")
    return node


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


class _AliasRefused(Exception):
    def __init__(self, message: str, *, recursive: bool) -> None:
        self.message = message
        self.recursive = recursive
        super().__init__(message)


_ALIAS_BOMB = (
    f"YAML aliases expand to more than {MAX_ALIAS_VALUES} values "
    "(counted up to this alias): refusing a possible alias bomb"
)
_RECURSIVE = "a YAML alias inside the value it names (a recursive structure) is refused"


def _alias_line(text: str, recursive: bool) -> int | None:
    """The line of the alias the converter refused: the same count, on the parser's events
    (the composed nodes no longer tell an alias from the node it names). Only run on refusal.
    """
    sizes: dict[str, int] = {}  # anchor -> values of its collection, aliases expanded
    open_: list[tuple[list[int], str | None]] = []  # ([values so far], anchor) being read
    through_aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_.append(([1], event.anchor))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            (size,), anchor = open_.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.AliasEvent) and event.anchor is not None:
            line = event.start_mark.line + 1 if event.start_mark else None
            if any(anchor == event.anchor for _, anchor in open_):
                if recursive:
                    return line
                continue
            size = sizes.get(event.anchor, 1)  # an alias of a scalar costs nothing extra
            through_aliases += size if event.anchor in sizes else 0
            if not recursive and through_aliases > MAX_ALIAS_VALUES:
                return line
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
        else:
            continue
        if open_:
            open_[-1][0][0] += size
    return None


class _Converter:
    """Nodes to plain data, each collection once: a second visit is an alias, shared.

    ``sizes`` holds each converted collection's value count, aliases expanded (keys count
    too), so an alias is charged what it names without being expanded.
    """

    def __init__(self, out: Located) -> None:
        self.out = out
        # A constructor alone: a whole SafeLoader is a reference cycle (its parser's state is a
        # bound method) that would keep every node it constructed until the cyclic collector ran.
        self.constructor = yaml.constructor.SafeConstructor()
        self.done: dict[int, tuple[Any, int]] = {}  # id(node) -> (data, size)
        self.open: set[int] = set()  # collections being converted
        self.through_aliases = 0

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        return self._value(node, path)[0]

    def _value(self, node: yaml.Node, path: Path_) -> tuple[Any, int]:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path), 1
        key = id(node)
        done = self.done.get(key)
        if done is not None:  # a second visit: an alias of a collection
            self.through_aliases += done[1]
            if self.through_aliases > MAX_ALIAS_VALUES:
                raise _AliasRefused(_ALIAS_BOMB, recursive=False)
            return done
        if key in self.open:
            raise _AliasRefused(_RECURSIVE, recursive=True)
        if len(path) >= MAX_DEPTH:
            raise YamlProblem(
                node.start_mark.line + 1, f"values are nested more than {MAX_DEPTH} levels deep"
            )
        self.open.add(key)
        result = self._collection(node, path)
        self.open.discard(key)
        self.done[key] = result
        return result

    def _collection(self, node: yaml.Node, path: Path_) -> tuple[Any, int]:
        out = self.out
        if node.tag not in _PLAIN_COLLECTION_TAGS:
            out.problems.append(
                (
                    node.start_mark.line + 1,
                    f"{_where(path, out)}unsupported YAML value (tag {node.tag})",
                )
            )
            return None, 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                if type(item) is yaml.ScalarNode and item.tag == _STR:  # most values: inline
                    items.append(item.value)
                    size += 1
                    continue
                value, n = self._value(item, (*path, i))
                items.append(value)
                size += n
            return items, size
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
            if type(value_node) is yaml.ScalarNode and value_node.tag == _STR:
                result[key] = value_node.value
                size += 2
                continue
            result[key], n = self._value(value_node, (*path, key))
            size += 1 + n
        return result, size

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        if node.tag == _STR:  # the common case, without the generic machinery
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self.out.problems.append(
                (
                    node.start_mark.line + 1,
                    f"{_where(path, self.out)}unsupported YAML value ({exc.problem})",
                )
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
