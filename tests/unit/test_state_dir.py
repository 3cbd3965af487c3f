"""#21 probe 6: the state directory is no way in.

Directories and files harestart finds in its state directory are trusted only once checked (a
real directory of this user that nobody else can write; files never opened through a symbolic
link), lock and journal names are injective in (account, group), and a journal is parsed with
bounds into a typed model and taken only by the group (and inventory) it was written for.
Each test is one probe of the issue and fails on the main of before the fix.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harestart.domain.result import utc_now
from harestart.engine.state.journal import Journal, find_journal, journal_path
from harestart.engine.state.lock import GroupLock, lock_path, read_holder
from harestart.engine.state.names import legacy_name, state_name
from harestart.errors import ExitCode, JournalError, JournalMismatch, StateDirError
from harestart.http.api import OPERATOR, Request, TokenMap
from harestart.http.server import build_api
from harestart.inventory.load import load_inventory
from tests.prometheus_text import samples, value

from .test_cli_run import ACCOUNT, Harestart, Lab, harestart, lab

__all__ = ["harestart", "lab"]  # the fixtures

TOKEN = "state-dir-test-token-0123456789"
REPO = Path(__file__).resolve().parents[2]


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def plant_journal(x: Lab, group_id: str, content: str | dict[str, Any]) -> Path:
    """A journal file at the group's name, as anyone who could write there would leave it."""
    path = journal_path(x.state, ACCOUNT, group_id)
    private_dir(path.parent)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def journal_doc(x: Lab, group: str, **changes: Any) -> dict[str, Any]:
    """An unfinished journal of ``group`` (of ACCOUNT, from x's inventory), as a document."""
    j = Journal(journal_path(x.state, ACCOUNT, group), group, ACCOUNT, str(x.inventory))
    j.inventory_path = os.path.realpath(x.inventory)
    j.started_at, j.outcome = utc_now(), "failed"
    j.step(f"restart_replica:{group}2").status = "failed"
    j.topology = {
        "source": f"{group}1",
        "source_server_id": 1,
        "replicas": {f"{group}2": 2, f"{group}3": 3},
    }
    return {**j.to_dict(), **changes}


def one_line_refusal(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("harestart:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the directory and its files -------------------------------------------------------------


def test_a_symlink_planted_at_the_lock_file_is_refused_and_its_target_kept(
    lab: Callable[..., Lab], harestart: Harestart, tmp_path: Path
) -> None:
    """#21 probe 6: a planted symlink at locks/<account>-<group>.lock made a run truncate its
    target; now the run is refused (exit 2) naming the lock file, and the target is intact."""
    x = lab("a")
    target = tmp_path / "precious"
    target.write_text("root:x:0:0::/root:/bin/sh\n")
    lock = lock_path(x.state, ACCOUNT, "a")
    private_dir(lock.parent)
    lock.symlink_to(target)

    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE
    line = one_line_refusal(r.err)
    assert str(lock) in line and "is a symbolic link" in line
    assert target.read_text() == "root:x:0:0::/root:/bin/sh\n"
    assert x.restarts("a") == [0, 0, 0]
    with pytest.raises(StateDirError, match="is a symbolic link"):
        GroupLock(x.state, ACCOUNT, "a", command="harestart run").acquire()
    assert target.read_text() == "root:x:0:0::/root:/bin/sh\n"
    # status says the group cannot be judged from its lock (ERROR with why), no traceback
    s = harestart(x, "status", "--format", "json")
    assert s.json()["state"] == "ERROR" and "is a symbolic link" in s.json()["state_reason"]


def test_journals_as_a_symlink_to_a_world_writable_directory_is_refused(
    lab: Callable[..., Lab], harestart: Harestart, tmp_path: Path
) -> None:
    """#21 probe 6: ``journals/`` as a symlink to a world-writable directory got the resume
    state written there; now run, resume and status refuse (exit 2) naming it."""
    x = lab("a")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(x.state)
    (x.state / "journals").symlink_to(shared)
    for command in ("run", "resume", "status"):
        r = harestart(x, command, "--yes") if command != "status" else harestart(x, command)
        assert r.code == ExitCode.USAGE, (command, r.err)
        line = one_line_refusal(r.err)
        assert f"{x.state / 'journals'} is a symbolic link" in line
    assert list(shared.iterdir()) == []
    assert x.restarts("a") == [0, 0, 0]


@pytest.mark.parametrize("where", ["", "locks", "journals", "logs"])
@pytest.mark.parametrize(("mode", "says"), [(0o770, "its group"), (0o757, "others")])
def test_a_state_directory_writable_by_others_is_refused(
    lab: Callable[..., Lab], harestart: Harestart, where: str, mode: int, says: str
) -> None:
    """#21 probe 6: a group- or world-writable state directory (or directory in it) was used
    as it was; now it is refused (exit 2) as ssh refuses such a ~/.ssh."""
    x = lab("a")
    d = private_dir(x.state / where)
    d.chmod(mode)
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE
    line = one_line_refusal(r.err)
    assert f"{d} is writable by {says} (mode {mode:04o})" in line
    assert x.restarts("a") == [0, 0, 0]
    assert harestart(x, "status").code == ExitCode.USAGE


def test_serve_refuses_an_untrusted_state_directory_before_listening(tmp_path: Path) -> None:
    """#21 probe 6: ``serve`` (whose restarts keep locks and journals there) refuses a
    group-writable state directory at start, exit 2, instead of serving from it (the real
    process, with a deadline: without the check it would serve until stopped)."""
    state = private_dir(tmp_path / "state")
    state.chmod(0o775)
    tokens = tmp_path / "tokens.yml"
    tokens.write_text(f'"{TOKEN}": "{ACCOUNT}"\n')
    tokens.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "harestart", "serve", "inventories/lab.yml", "--port", "0",
         "--tokens", str(tokens)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        env={**os.environ, "HARESTART_STATE_DIR": str(state)},
    )  # fmt: skip
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert f"state directory {state} is writable by its group" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("where", ["", "journals"])
def test_a_state_directory_of_another_user_is_refused(
    lab: Callable[..., Lab], harestart: Harestart, where: str
) -> None:
    """#21 probe 6: a state directory owned by another user was trusted; now refused (exit 2)
    naming the owner. (The suite runs as root, which may give a directory away.)"""
    x = lab("a")
    d = private_dir(x.state / where)
    os.chown(d, 4242, -1)
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE
    assert f"{d} is owned by uid 4242, not by uid {os.geteuid()}" in one_line_refusal(r.err)
    assert x.restarts("a") == [0, 0, 0]


def test_what_a_run_creates_is_owner_only(lab: Callable[..., Lab], harestart: Harestart) -> None:
    """The state directory and what is in it are created 0700 (directories) and 0600 (files),
    whatever the umask, and a second run accepts what the first created."""
    x = lab("a")
    old = os.umask(0o002)
    try:
        assert harestart(x, "run", "--yes").code == ExitCode.OK
        assert harestart(x, "run", "--yes").code == ExitCode.OK
    finally:
        os.umask(old)
    for d in (x.state, x.state / "locks", x.state / "journals", x.state / "logs"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in [*x.state.glob("*/*")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_lock_file_full_of_brackets_is_no_holder_not_a_crash(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6 (same family): a lock file of 4,096 ``[`` made json.loads raise
    RecursionError in status; now it names no holder."""
    x = lab("a")
    lock = lock_path(x.state, ACCOUNT, "a")
    private_dir(lock.parent)
    lock.write_text("[" * 4096)
    assert read_holder(x.state, ACCOUNT, "a") == (None, False)
    assert harestart(x, "status").code == ExitCode.OK


def test_a_fifo_planted_as_the_journal_is_refused_not_waited_on(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6 (same family): a FIFO at the journal's name blocked ``status`` in open()
    until someone wrote to it; now it is opened without waiting and refused."""
    x = lab("a")
    path = journal_path(x.state, ACCOUNT, "a")
    private_dir(path.parent)
    os.mkfifo(path, 0o600)
    refused: list[Exception] = []
    done = threading.Event()

    def load() -> None:  # in a thread: without the guard, open() waits for a writer forever
        try:
            Journal.load(path)
        except StateDirError as exc:
            refused.append(exc)
        finally:
            done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(30) and "is not a regular file" in str(refused[0])
    s = harestart(x, "status", "--format", "json").json()
    assert s["state"] == "ERROR" and f"{path} is not a regular file" in s["state_reason"]


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [(("1", "x:y"), ("1", "x_y")), (("a", "b-c"), ("a-b", "c")), (("a+b", "c"), ("a", "b+c"))],
)
def test_names_are_injective_in_account_and_group(
    tmp_path: Path, one: tuple[str, str], other: tuple[str, str]
) -> None:
    """#21 probe 6: groups ``x:y`` and ``x_y`` (or account ``a`` + group ``b-c`` and account
    ``a-b`` + group ``c``) shared one lock and one journal; now each has its own: one group's
    lock held leaves the other free, one group's journal is not the other's."""
    assert state_name(*one, ".lock") != state_name(*other, ".lock")
    with GroupLock(tmp_path, *one, command="harestart run"):
        assert read_holder(tmp_path, *one)[1] is True
        assert read_holder(tmp_path, *other) == (None, False)
        with GroupLock(tmp_path, *other, command="harestart run"):
            assert read_holder(tmp_path, *other)[1] is True
    j = Journal(journal_path(tmp_path, *one), one[1], one[0], "inv.yml")
    j.save()
    assert find_journal(tmp_path, *one, "inv.yml") == j
    assert find_journal(tmp_path, *other, "inv.yml") is None


def test_ordinary_names_stay_readable_and_long_ones_fit() -> None:
    assert (
        state_name("1234", "3a493f8c-9b9c-4ca1.x_y", ".json") == "1234+3a493f8c-9b9c-4ca1.x_y.json"
    )
    assert state_name("1", "x:y", ".lock") == "1+x%3Ay.lock"
    long_one, long_two = state_name("1", ":" * 128, ".json"), state_name("1", ":" * 127, ".json")
    assert len(long_one) <= 200 and "#" in long_one and long_one != long_two


def test_groups_x_colon_y_and_x_y_do_not_see_each_others_run(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6 (the issue's lab scenario on the fakes): x:y's unfinished run and lock are
    not reported for x_y, and x_y runs while x:y is held."""
    x = lab("x:y", "x_y")
    plant_journal(x, "x:y", journal_doc(x, "x:y"))
    x.lock("x:y")
    r = harestart(x, "status", "--group", "x_y", "--format", "json")
    doc = r.json()
    assert doc["state"] == "ACTIVE" and doc["unfinished_run"] is None and doc["lock"] is None
    r = harestart(x, "status", "--group", "x:y", "--format", "json")
    assert r.json()["state"] == "REBOOT" and r.json()["unfinished_run"]["outcome"] == "failed"
    assert harestart(x, "run", "--yes", "--group", "x_y").code == ExitCode.OK
    assert x.restarts("x_y") == [1, 1, 1] and x.restarts("x:y") == [0, 0, 0]


def test_a_journal_of_the_earlier_naming_is_found_only_by_its_own_group(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """A journal an earlier harestart left at ``1-x_y.json`` (x:y's, killed mid-run before the
    upgrade) is still x:y's to resume, and never x_y's; resumed, it moves to the new name."""
    x = lab("x:y", "x_y")
    old = private_dir(x.state / "journals") / legacy_name(ACCOUNT, "x_y", ".json")
    doc = journal_doc(x, "x:y", version=2)
    del doc["inventory_path"]
    old.write_text(json.dumps(doc))
    r = harestart(x, "status", "--group", "x_y", "--format", "json")
    assert r.json()["state"] == "ACTIVE" and r.json()["unfinished_run"] is None
    r = harestart(x, "status", "--group", "x:y", "--format", "json")
    assert r.json()["state"] == "ERROR" and r.json()["unfinished_run"]["outcome"] == "failed"
    r = harestart(x, "resume", "--yes", "--group", "x:y", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert not old.exists() and journal_path(x.state, ACCOUNT, "x:y").exists()


# --- a journal written for another group or inventory ------------------------------------------


def test_a_journal_of_another_group_is_refused_and_nothing_resumed(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6: a journal was never checked against the group it was loaded for; now one
    that records another group makes the group ERROR with why, and resume refuses (exit 2)."""
    x = lab("a")
    path = plant_journal(x, "a", journal_doc(x, "b"))
    s = harestart(x, "status", "--format", "json").json()
    assert s["state"] == "ERROR" and s["unfinished_run"] is None
    assert f"{path} records a run of group 'b'" in s["state_reason"]
    for args in (("resume", "--yes"), ("run", "--yes")):
        r = harestart(x, *args)
        assert r.code == ExitCode.USAGE and "records a run of group 'b'" in one_line_refusal(r.err)
    assert x.restarts("a") == [0, 0, 0]
    # a new run may replace it when asked to
    assert harestart(x, "run", "--yes", "--discard-unfinished").code == ExitCode.OK
    replaced = find_journal(x.state, ACCOUNT, "a", str(x.inventory))
    assert replaced is not None and replaced.group == "a" and replaced.finished
    plant_journal(x, "a", journal_doc(x, "b"))
    with pytest.raises(JournalMismatch):
        find_journal(x.state, ACCOUNT, "a", str(x.inventory))


def test_an_unfinished_journal_of_another_inventory_is_refused(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6: an unfinished run begun from another inventory file is not resumed from
    this one: resume refuses (exit 2) naming the inventory it came from."""
    x = lab("a")
    plant_journal(x, "a", journal_doc(x, "a", inventory_path="/elsewhere/inv.yml"))
    r = harestart(x, "resume", "--yes")
    assert r.code == ExitCode.USAGE
    assert "from the inventory /elsewhere/inv.yml" in one_line_refusal(r.err)
    assert x.restarts("a") == [0, 0, 0]
    s = harestart(x, "status", "--format", "json").json()
    assert s["state"] == "ERROR" and "/elsewhere/inv.yml" in s["state_reason"]


# --- malformed journals ------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_journal_nested_100000_deep_is_error_in_status_not_a_traceback(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    """#21 probe 6: a journal nested 100,000 deep crashed ``status`` with a traceback; now the
    group is ERROR with the reason (text and JSON), status exits by health as documented (the
    nodes are healthy: 0) and resume refuses (exit 2) in one line."""
    x = lab("a")
    path = plant_journal(x, "a", '{"version": 3, "steps": ' + DEEP + "}")
    r = harestart(x, "status")
    assert r.code == ExitCode.OK and "Traceback" not in r.err
    assert "group a (account 1): ERROR, healthy" in r.out
    assert f"why: the run journal cannot be used: {path}: malformed journal" in r.out
    assert "recursion limit exceeded" in r.out
    doc = harestart(x, "status", "--format", "json").json()
    assert doc["state"] == "ERROR" and "malformed journal" in doc["state_reason"]
    r = harestart(x, "resume", "--yes")
    assert r.code == ExitCode.USAGE and "malformed journal" in one_line_refusal(r.err)


def test_a_journal_nested_100000_deep_answers_get_ha_and_metrics_without_500(
    lab: Callable[..., Lab],
) -> None:
    """#21 probe 6: the same journal turned ``/metrics`` into a 500; now GET /ha/{id} says
    ERROR with the reason and /metrics counts the group as ERROR."""
    x = lab("a")
    plant_journal(x, "a", DEEP)
    inv = load_inventory(x.inventory)
    operator = "operator-token-0123456789abcdef"  # /metrics and the journal's error (#21)
    tokens = TokenMap({TOKEN: ACCOUNT, operator: OPERATOR})
    api, _, _ = build_api(inv, tokens, threading.Event(), env=x.env)
    auth = {"x-auth-token": operator, "accept": "application/json"}
    resp = api.handle(Request("GET", f"/v1.0/{ACCOUNT}/ha/a", headers=auth))
    assert resp.status == 200, resp.body
    ha = json.loads(resp.body)["ha_instance"]
    assert ha["state"] == "ERROR" and "malformed journal" in ha["state_reason"]
    tenant = {"x-auth-token": TOKEN, "accept": "application/json"}  # ERROR, not the path
    resp = api.handle(Request("GET", f"/v1.0/{ACCOUNT}/ha/a", headers=tenant))
    ha = json.loads(resp.body)["ha_instance"]
    assert ha["state"] == "ERROR" and "an operator must look" in ha["state_reason"]
    resp = api.handle(Request("GET", "/metrics", headers=auth))
    assert resp.status == 200, resp.body
    found = samples(resp.body.decode())
    assert value(found, "harestart_group_state", account=ACCOUNT, group="a", state="ERROR") == 1


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"finished": "no"}, "finished: Input should be a valid boolean"),
        ({"finished": 1}, "finished: Input should be a valid boolean"),
        ({"steps": [{"key": "x", "status": "done", "secret": 1}]}, "steps.0.secret"),
        ({"memory": {"nodes": {"a2": {"read_only": "maybe"}}}}, "not a read_only token"),
        ({"attempts": "2"}, "attempts: Input should be a valid integer"),
    ],
)
def test_a_malformed_journal_is_error_with_its_reason(
    lab: Callable[..., Lab], harestart: Harestart, content: dict[str, Any], says: str
) -> None:
    """#21 probe 6: ``"finished": "no"`` read as finished (a truthy string); now every field
    is typed: a wrong type is a malformed journal, the group ERROR with the field named."""
    x = lab("a")
    path = plant_journal(x, "a", journal_doc(x, "a", **content))
    with pytest.raises(JournalError, match="malformed journal") as err:
        Journal.load(path)
    assert says in str(err.value)
    s = harestart(x, "status", "--format", "json").json()
    assert s["state"] == "ERROR" and says in s["state_reason"]
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE and says in one_line_refusal(r.err)


def test_a_journal_over_the_size_bound_is_malformed(tmp_path: Path) -> None:
    """A journal is read up to 1 MiB: a bigger file is refused before it is parsed."""
    path = journal_path(tmp_path, "1", "a")
    private_dir(path.parent)
    path.write_text(" " * (1 << 20) + "{}")
    with pytest.raises(JournalError, match=r"more than 1048576"):
        Journal.load(path)
