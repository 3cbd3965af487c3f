"""The safe YAML loader guards what an alias bomb does, not the size of a plain document.

Refused: more than MAX_ALIAS_VALUES values reached through aliases (named by the alias's line),
an alias inside the value it names, nesting deeper than MAX_DEPTH, a file over MAX_BYTES.
Loaded: a plain fleet of any size, and a few aliases reusing shared settings.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harestart.errors import InventoryError
from harestart.inventory import yamlsafe
from harestart.inventory.load import parse_inventory
from harestart.inventory.yamlsafe import (
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    YamlProblem,
    load_located,
)

REPO = Path(__file__).resolve().parents[2]


def fleet_text(groups: int) -> str:
    """A plain inventory (no anchors or aliases) of ``groups`` groups of three nodes."""
    lines = [
        "defaults:",
        "  ssh: {user: ops, sudo: true}",
        "  mysql: {user: harestart, password_env: HS_TEST_PW}",
        "groups:",
    ]
    for i in range(groups):
        net = f"10.{i // 250}.{i % 250}"
        lines += [
            f"  - id: g{i:05d}",
            f"    account: '{100000 + i % 50}'",
            "    source:",
            f"      name: g{i}-db1",
            f"      address: {net}.1",
            "    replicas:",
            f"      - {{name: g{i}-db2, address: {net}.2}}",
            f"      - {{name: g{i}-db3, address: {net}.3}}",
            "    mha:",
            f"      manager: {{name: g{i}-mha, address: {net}.9}}",
            "      config: /etc/mha/app.cnf",
        ]
    return "\n".join(lines) + "\n"


def refused(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as info:
        load_located(textwrap.dedent(text))
    return info.value


def laughs(levels: int, width: int = 10) -> str:
    """Billion laughs: each level lists ``width`` aliases of the one before."""
    text = "l0: &l0 [" + ", ".join(["lol"] * width) + "]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return text + f"groups: *l{levels - 1}\n"


# --- plain documents of any size -------------------------------------------------------------


def test_a_plain_fleet_of_10000_groups_loads() -> None:
    text = fleet_text(10_000)
    assert len(text) > 2_500_000  # about 3 MB: the old total-values budget refused it
    inv = parse_inventory(text, "fleet.yml")
    assert len(inv.groups) == 10_000
    assert inv.groups[-1].id == "g09999" and inv.groups[-1].replicas[1].ssh.host == "10.39.249.3"


def test_the_absolute_size_limit_is_in_bytes_and_said_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yamlsafe, "MAX_BYTES", 1024)
    problem = refused(fleet_text(10))
    assert "the file is larger than" in problem.message and problem.line is None
    load_located("a: " + "x" * 1000 + "\n")  # just under the limit loads


# --- alias bombs -----------------------------------------------------------------------------


def test_billion_laughs_is_refused_without_being_expanded() -> None:
    # 10**30 values if expanded: finishing at all proves nothing was expanded.
    problem = refused(laughs(30))
    assert "alias bomb" in problem.message and str(MAX_ALIAS_VALUES) in problem.message
    # l1..l3 expand to 10*11 + 10*111 + 9*1111 values, past 10,000 at the 9th *l2 of line 4
    assert problem.line == 4


def test_the_budget_counts_what_each_alias_names_up_to_the_limit() -> None:
    # a list of 99 scalars is 100 values; each alias of it costs 100
    anchor = "base: &b [" + ", ".join(["x"] * 99) + "]\n"

    def uses(n: int) -> str:
        return anchor + "uses:\n" + "  - *b\n" * n

    located = load_located(uses(MAX_ALIAS_VALUES // 100))
    assert len(located.data["uses"]) == 100 and located.data["uses"][-1] == ["x"] * 99
    problem = refused(uses(MAX_ALIAS_VALUES // 100 + 1))
    assert "alias bomb" in problem.message and problem.line == 2 + MAX_ALIAS_VALUES // 100 + 1


def test_aliases_of_a_scalar_cost_nothing_more_than_the_alias_itself() -> None:
    text = "v: &v hello\nl: [" + ", ".join(["*v"] * (2 * MAX_ALIAS_VALUES)) + "]\n"
    assert load_located(text).data["l"][-1] == "hello"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("x: 1\na: &a\n  - 1\n  - *a\n", 4),
        ("a: &a {b: {c: *a}}\n", 1),
    ],
    ids=["sequence", "mapping"],
)
def test_an_alias_inside_what_it_names_is_refused(text: str, line: int) -> None:
    problem = refused(text)
    assert "recursive" in problem.message and problem.line == line


# --- nesting ---------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_loads_and_deeper_is_refused() -> None:
    def flow(depth: int) -> str:
        return "x: " + "[" * depth + "]" * depth + "\n"

    assert load_located(flow(MAX_DEPTH - 1)).data["x"] is not None  # + the top-level mapping
    problem = refused(flow(MAX_DEPTH))
    assert f"nested more than {MAX_DEPTH} levels" in problem.message and problem.line == 1
    block = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    assert f"more than {MAX_DEPTH}" in refused(block).message
    assert "not valid YAML" in refused("[" * 100_000 + "]" * 100_000).message  # libyaml's stop


# --- legitimate aliases ----------------------------------------------------------------------

SHARED = """\
defaults:
  mysql: {user: harestart, password_env: HS_TEST_PW}
groups:
  - id: g1
    account: "1"
    ssh: &ops {user: ops, port: 2222, sudo: true}
    health: &patient {restart_timeout: 900, catchup_timeout: 600}
    source: {name: db1, address: 10.0.0.1}
    replicas: [{name: db2, address: 10.0.0.2}]
    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}
  - id: g2
    account: "1"
    ssh: *ops
    health: *patient
    source: {name: db1, address: 10.0.1.1}
    replicas: [{name: db2, address: 10.0.1.2}]
    mha: {manager: {name: mha, address: 10.0.1.9}, config: /etc/mha/app2.cnf}
"""


def test_a_few_aliases_reusing_settings_still_load() -> None:
    inv = parse_inventory(SHARED, "inv.yml")
    g1, g2 = inv.groups
    for g in (g1, g2):
        assert g.source.ssh.port == 2222 and g.source.ssh.user == "ops"
        assert g.health.restart_timeout == 900
    assert g2.source.ssh.host == "10.0.1.1"


def test_a_problem_inside_an_aliased_value_points_at_the_anchored_line() -> None:
    text = SHARED.replace("port: 2222", "port: 2222, colour: red")
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yml")
    colour = [p for p in info.value.problems if "colour" in p]
    assert colour and all(p.startswith("inv.yml:6: ") for p in colour), info.value.problems


# --- libyaml's composer, and PyYAML's own without it ------------------------------------------

HAS_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))


def test_libyaml_composes_where_pyyaml_has_it() -> None:
    # The speed of `plan` on a fleet rests on it (PyYAML's wheels bring libyaml).
    assert HAS_LIBYAML, "PyYAML without libyaml: a fleet's inventory loads several times slower"
    assert yamlsafe._Loader.__name__ == "_CLoader"


def test_the_quick_resolver_tags_every_scalar_as_pyyaml_does() -> None:
    # It skips PyYAML's walk for a plain scalar whose first character starts no implicit
    # pattern: only right while no pattern matches any first character and none goes by path.
    resolver = yaml.resolver.Resolver
    assert None not in resolver.yaml_implicit_resolvers and not resolver.yaml_path_resolvers
    starts = {chr(c) for c in range(32, 127)} | {"é", "\t"}
    samples = [""] + [s + rest for s in starts for rest in ("", "1", "x", ".5", "rue", "ull")]
    samples += ["10.0.0.1", "0x1F", "1_000", "2026-11-27", "<<", "=", "~", ".inf", "-.5", "+1"]
    reference, quick = yaml.SafeLoader(""), yamlsafe._PyLoader("")
    for kind in (yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode):
        for value in samples:
            for implicit in ((True, False), (False, True), (False, False)):
                expected = reference.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                assert quick.resolve(kind, value, implicit) == expected, (kind, value, implicit)


def test_loading_leaves_no_reference_cycle() -> None:
    # The composed document is large (130 MB for 10,000 groups): reference counting alone
    # must free it once the inventory is loaded. A cycle kept it until a collection, and the
    # CLI's gc.freeze() after loading kept it for good. Only the loader's objects are judged:
    # another test's thread on this worker may leave cyclic garbage of its own meanwhile.
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable stays in gc.garbage
    try:
        inv = parse_inventory(fleet_text(20).replace("sudo: true", "sudo: true, port: 22"), "f.yml")
        load_located(SHARED)
        assert len(inv.groups) == 20
        gc.collect()
        leaked = [type(o).__name__ for o in gc.garbage if _from_loading(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []


def _from_loading(obj: object) -> bool:
    """An object the YAML loader or the inventory's own code made (nodes, events, marks...)."""
    module = getattr(type(obj), "__module__", "") or ""
    return isinstance(obj, yaml.Node) or module.startswith(("yaml", "harestart.inventory"))


def _outcomes(cases: dict[str, str]) -> dict[str, object]:
    """What loading each document gives: the groups (their repr), warnings and problems with
    their lines, or the loader's refusal."""
    out: dict[str, object] = {}
    for name, text in cases.items():
        try:
            inv = parse_inventory(text, "inv.yml", Path("/inv"))
            out[name] = [repr(inv.groups), list(inv.warnings)]
        except InventoryError as exc:
            out[name] = exc.problems
    return out


def _cases() -> dict[str, str]:
    from tests.unit.test_inventory import MALFORMED, VALID

    cases = {name: text for name, text, *_ in MALFORMED}
    cases |= {"fleet": fleet_text(30), "shared": SHARED, "valid": VALID}
    cases["tags and merge keys"] = VALID.replace(
        'account: "1"', "account: !!binary MQ==\n    <<: {x: 1}"
    )
    cases["bomb"] = laughs(6)
    cases["recursive"] = "x: 1\na: &a\n  - 1\n  - *a\n"
    cases["deep"] = "x: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    cases["bad syntax"] = "groups:\n  - id: a\n   account: b\n"
    return cases


def test_lines_with_libyaml_are_those_of_the_document() -> None:
    # libyaml's marks are 0-based like PyYAML's; every message names the line it is about.
    text = textwrap.dedent(
        """\
        defaults:
          ssh: {user: ops}
          mysql: {user: harestart, password_env: PW}
        groups:
          - id: g1
            account: "1"
            source: {name: db1, address: 10.0.0.1, colour: red}
            replicas:
              - name: db2
                ssh: {port: 0}
              - {name: db3, address: !env DB3}
            mha: {manager: {name: mha}, config: /etc/mha/app1.cnf}
            mha: {manager: {name: mha}, config: /etc/mha/app1.cnf}
        """
    )
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yml")
    lines = {p.split(":")[1]: p for p in info.value.problems}
    assert "unknown key 'colour'" in lines["7"]
    assert "replicas[0].ssh.port" in lines["10"]
    assert "unsupported YAML value" in lines["11"]
    assert "duplicate key 'mha'" in lines["13"]


def test_without_libyaml_the_same_groups_problems_and_lines() -> None:
    """PyYAML's pure-Python parser (as where PyYAML was built without libyaml) gives exactly
    what libyaml's gives: a fallback, the same results."""
    child = (
        "import json, sys\n"
        "sys.modules['yaml._yaml'] = None  # as if PyYAML had no libyaml\n"
        "from harestart.inventory import yamlsafe\n"
        "assert yamlsafe._Loader is yamlsafe._PyLoader, yamlsafe._Loader\n"
        "from tests.unit.test_yamlsafe import _cases, _outcomes\n"
        "print(json.dumps(_outcomes(_cases())))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _same_parser_words(json.loads(done.stdout)) == _same_parser_words(_outcomes(_cases()))


def _same_parser_words(outcomes: dict[str, object]) -> dict[str, object]:
    """Syntax errors cut after their line: only their words are the parser's own (libyaml's
    and PyYAML's differ), never the line."""
    cut = "not valid YAML:"

    def word(item: object) -> object:
        if isinstance(item, str) and cut in item:
            return item[: item.index(cut) + len(cut)]
        return item

    return {k: [word(i) for i in v] if isinstance(v, list) else v for k, v in outcomes.items()}


def test_the_nodes_are_let_go_after_loading_and_a_line_composes_them_again() -> None:
    # A fleet's composed nodes are five times its data: a valid load keeps none of them, and
    # the first line a message asks for composes the text again (the same lines).
    text = fleet_text(3)
    located = load_located(text)
    assert located._root is None
    assert located.line_of(("groups", 2, "replicas", 1, "address")) == 34
    assert located.line_of(("groups", 1, "mha", "config")) == 26
    assert located.line_of(("groups", 9)) == 4  # the nearest ancestor that exists
