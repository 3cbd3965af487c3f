"""Rules that keep the suite from flaking or lying (issue #20), checked on the source text.

- No docker-py exec in tests/, bench/ or lab/: under load it sometimes returns a short
  command's output empty (docker/docker-py #2042, #3332). ``tests.integration.lab.docker_exec``
  (the ``docker exec`` command line) is the one way to run a command in a lab container.
- No test writes a golden file: ``make golden`` (tests/golden.py) does, outside the test run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
# docker-py's exec calls, and testcontainers' DockerContainer.exec, which wraps them.
DOCKER_PY_EXEC = re.compile(r"\bexec_(run|create|start|inspect)\b|\bcontainer\.exec\(")
GOLDEN_WRITE = re.compile(r"UPDATE_GOLDEN|GOLDEN\w*\s*/.*\.write_(text|bytes)\(")


def _sources(*folders: str) -> list[Path]:
    files = [p for f in folders for p in (REPO / f).rglob("*") if p.suffix in (".py", ".sh")]
    return sorted(p for p in files if p.resolve() != THIS and ".venv" not in p.parts)


def _hits(pattern: re.Pattern[str], files: list[Path]) -> list[str]:
    return [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]


def test_the_rule_sees_what_it_forbids() -> None:
    assert DOCKER_PY_EXEC.search("c.get_wrapped_container().exec_run(argv)")
    assert DOCKER_PY_EXEC.search("client.api.exec_create(cid, cmd)")
    assert DOCKER_PY_EXEC.search("node.container.exec(['ls'])")
    assert not DOCKER_PY_EXEC.search("cluster.exec('db1', ['ls'])")
    assert GOLDEN_WRITE.search('if os.environ.get("HARESTART_UPDATE_GOLDEN") == "1":')
    assert GOLDEN_WRITE.search("(GOLDEN / name).write_text(actual)")


@pytest.mark.parametrize("folder", ["tests", "bench", "lab"])
def test_no_docker_py_exec(folder: str) -> None:
    hits = _hits(DOCKER_PY_EXEC, _sources(folder))
    assert not hits, "use tests.integration.lab.docker_exec (cluster.exec) instead:\n" + "\n".join(
        hits
    )


def test_no_test_writes_a_golden_file() -> None:
    tests = [p for p in _sources("tests") if p.name.startswith("test_")]
    hits = _hits(GOLDEN_WRITE, tests)
    assert not hits, "golden files are written by `make golden` only:\n" + "\n".join(hits)
