"""The docs' reference pages follow the code: each is generated from it at build time
(docs/gen_ref.py, mkdocs-click), so changing a help text, a meaning or a field changes the page."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import click
import markdown
import pytest
from mkdocs_click._extension import ClickProcessor

from harestart.cli import cli
from harestart.errors import EXIT_CODE_MEANINGS, ExitCode
from harestart.inventory.schema import InventorySpec
from harestart.views.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def _load_gen_ref() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ref", DOCS / "gen_ref.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # run as a module, not by mkdocs: writes nothing
    return module


gen_ref = _load_gen_ref()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _cli_page() -> str:
    """docs/reference/cli.md as the build renders it: its mkdocs-click block expanded."""
    lines = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8").splitlines()
    return "\n".join(ClickProcessor(markdown.Markdown()).run(lines))


def _commands() -> list[tuple[str, click.Command]]:
    assert isinstance(cli, click.Group)
    return sorted(cli.commands.items())


def test_the_cli_page_has_every_command_and_every_options_help() -> None:
    page = _flat(_cli_page())
    for name, command in _commands():
        assert f"harestart {name}" in page, name
        for param in command.params:
            if isinstance(param, click.Option) and param.help and not param.hidden:
                assert _flat(param.help) in page, (name, param.name)


def test_changing_an_options_help_changes_the_cli_page(monkeypatch: pytest.MonkeyPatch) -> None:
    option = next(p for p in cli.commands["run"].params if isinstance(p, click.Option) and p.help)
    monkeypatch.setattr(option, "help", "A help text written by this test only.")
    assert "A help text written by this test only." in _cli_page()


def test_the_exit_code_page_is_errors_py() -> None:
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)  # every code has its meaning
    page = gen_ref.exit_codes_page()
    for code in ExitCode:
        row = f"| {int(code)} | `{code.name}` | {_flat(EXIT_CODE_MEANINGS[code])} |"
        assert row in page
    changed = {**EXIT_CODE_MEANINGS, ExitCode.LOCKED: "a meaning written by this test"}
    assert "| 4 | `LOCKED` | a meaning written by this test |" in gen_ref.exit_codes_page(changed)


def test_the_metrics_page_is_the_registry() -> None:
    page = gen_ref.metrics_page()
    families = list(gen_ref._sample_metrics().registry.collect())
    assert len(families) == 9
    for family in families:
        assert family.documentation in page
        assert f"`{family.name}" in page
    assert (
        "| `harestart_node_pending_restart` | gauge | `account`, `group`, `node`, `reason` |"
        in page
    )
    assert "| `harestart_restarts_total` | counter | `account`, `group`, `result` |" in page


def test_changing_a_metrics_help_changes_the_page() -> None:
    metrics = Metrics()
    metrics.restart_duration._documentation = "help written by this test"
    assert "help written by this test" in gen_ref.metrics_page(metrics)


def test_the_inventory_schema_page_has_every_key_of_every_section() -> None:
    schema = InventorySpec.model_json_schema()
    page = gen_ref.inventory_schema_page()
    for name, model in [("InventorySpec", schema), *schema["$defs"].items()]:
        section = page[page.index(f"### {name}\n") :]
        for key in model["properties"]:
            assert f"| `{key}` |" in section, (name, key)
    assert "| `health.max_lag` | `5.0` |" in page and "| `ssh.sudo` | `false` |" in page
    assert (REPO / "inventories" / "example.yml").read_text(encoding="utf-8").strip() in page


def test_the_http_page_has_every_operation_of_the_contract() -> None:
    doc = json.loads((REPO / "harestart" / "http" / "openapi.json").read_text(encoding="utf-8"))
    page = gen_ref.http_api_page()
    for route, ops in doc["paths"].items():
        for method, op in ops.items():
            assert f"### `{method.upper()} {route}`" in page
            assert f"(`{op['operationId']}`)" in page
            for status in op["responses"]:
                assert f"| {status} |" in page
    doc["paths"]["/metrics"]["get"]["summary"] = "a summary written by this test"
    assert "a summary written by this test" in gen_ref.http_api_page(doc)


def test_the_architecture_page_names_every_module_and_contract() -> None:
    page = gen_ref.architecture_page()
    for path in sorted((REPO / "harestart").rglob("*.py")):
        name = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
        assert f"| `{name}` |" in page, name
    for layer in ("harestart.cli", "harestart.engine", "harestart.domain"):
        assert f"`{layer}`" in page
    assert "The domain is pure" in page


def test_the_architecture_page_quotes_each_modules_docstring(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text('"""Holds a thing written by this test. More."""\n')
    assert "| `pkg.mod` | Holds a thing written by this test. |" in gen_ref.architecture_page(
        package
    )


def test_gen_ref_runs_only_under_mkdocs() -> None:
    """Imported (by these tests), the script defines pages and writes nothing."""
    tree = ast.parse((DOCS / "gen_ref.py").read_text(encoding="utf-8"))
    guard = [n for n in tree.body if isinstance(n, ast.If)]
    assert len(guard) == 1 and "<run_path>" in ast.unparse(guard[0].test)
