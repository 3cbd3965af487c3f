"""No secret in anything harestart writes: outputs, logs, journals, locks.

One 1+1 cluster; ``plan --probe``, ``status``, a good ``run`` (verbose, with --log-file), a run
refused in preflight for a wrong MySQL password, and a run whose restart command fails. Then
every byte those commands printed or left in their state dir is searched for the lab's
passwords, the wrong password and the SSH private key; and the state dir is owner-only.
"""

from __future__ import annotations

import os
import secrets
import stat
import string
from pathlib import Path

import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import Outcome, harestart

pytestmark = pytest.mark.integration


def _wrong_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "Wr0ng" + "".join(secrets.choice(alphabet) for _ in range(19))


def _repoint_password_file(inventory: Path, password_file: Path) -> Path:
    doc = yaml.safe_load(inventory.read_text())
    doc["defaults"]["mysql"]["password_file"] = str(password_file.resolve())
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inventory


def _key_material(key_file: Path) -> list[str]:
    """The private key's text, and each of its base64 lines alone (a partial leak counts)."""
    text = key_file.read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    return [text.strip(), *(ln for ln in lines if ln and not ln.startswith("-----"))]


def test_nothing_harestart_writes_contains_a_secret(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    state = tmp_path / "state"  # created by harestart itself (its modes are under test)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    inventory = cluster.write_inventory(inputs / "inv.yml")

    wrong = _wrong_password()
    wrong_file = inputs / "wrong_password"
    wrong_file.write_text(wrong)
    wrong_file.chmod(0o600)
    wrong_inventory = _repoint_password_file(
        cluster.write_inventory(inputs / "wrong-password.yml"), wrong_file
    )
    broken_inventory = cluster.write_inventory(
        inputs / "broken-restart.yml", restart_command="service mariadb-nope restart"
    )
    log_file = tmp_path / "run.jsonl"
    outcomes: dict[str, Outcome] = {}

    def cli(label: str, *args: str) -> Outcome:
        out = harestart(*args, state_dir=state)
        outcomes[label] = out
        return out

    out = cli("plan --probe", "plan", str(inventory), "--probe")
    assert out.returncode == 0, out.stderr
    out = cli("status", "status", str(inventory), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert out.json()["healthy"] is True
    out = cli(
        "run -v",
        "run",
        str(inventory),
        "--yes",
        "--format",
        "json",
        "--log-file",
        str(log_file),
        "-v",
    )
    assert out.returncode == 0, out.stderr
    assert out.json()["state"] == "ACTIVE"
    # -v really printed debug events (the commands and queries), so the scan below covers them.
    assert "[debug" in out.stderr and "mysql.query" in out.stderr, out.stderr[:2000]
    assert f"{cluster.admin_user}@" in out.stderr  # MySQL connects are logged too

    out = cli("run wrong password", "run", str(wrong_inventory), "--yes", "--format", "json", "-v")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "nothing was changed" in out.stderr
    out = cli(
        "run failing restart", "run", str(broken_inventory), "--yes", "--format", "json", "-v"
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.json()["state"] == "ERROR"

    # Everything written: outputs, the --log-file, every file under the state dir.
    written: dict[str, bytes] = {}
    for label, o in outcomes.items():
        written[f"{label}: stdout"] = o.stdout.encode()
        written[f"{label}: stderr"] = o.stderr.encode()
    written[str(log_file)] = log_file.read_bytes()
    state_files = [p for p in state.rglob("*") if p.is_file()]
    state_dirs = [state, *(p for p in state.rglob("*") if p.is_dir())]
    for p in state_files:
        written[str(p)] = p.read_bytes()
    # The state dir really holds what the runs left: logs and journals at least.
    assert any("log" in str(p.relative_to(state)) for p in state_files), state_files
    assert len(state_files) >= 2, state_files

    needles = {
        "admin password": cluster.admin_password,
        "repl password": cluster.repl_password,
        "mha password": cluster.mha_password,
        "wrong password": wrong,
        **{f"private key part {i}": s for i, s in enumerate(_key_material(cluster.key_file))},
    }
    leaks = [
        f"{what} in {where}"
        for where, data in written.items()
        for what, needle in needles.items()
        if needle.encode() in data
    ]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)

    # Owner-only: files 0600, directories 0700 (the state dir itself included).
    bad_modes = [
        f"{p} {stat.filemode(os.stat(p).st_mode)}"
        for p in state_files
        if stat.S_IMODE(os.stat(p).st_mode) != 0o600
    ] + [
        f"{p} {stat.filemode(os.stat(p).st_mode)}"
        for p in state_dirs
        if stat.S_IMODE(os.stat(p).st_mode) != 0o700
    ]
    if log_file.exists() and stat.S_IMODE(log_file.stat().st_mode) != 0o600:
        bad_modes.append(f"{log_file} {stat.filemode(log_file.stat().st_mode)}")
    assert not bad_modes, "not owner-only:\n" + "\n".join(bad_modes)
