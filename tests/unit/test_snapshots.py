"""The journal as a file of snapshots (engine/state/snapshots.py): a run's first save replaces
the file, later saves append one line each; the last complete line is the journal, a line cut
by a crash is not; the journals earlier harestarts wrote (one document) are still read."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from harestart.engine.state import snapshots
from harestart.engine.state.journal import Journal, find_journal, journal_path
from harestart.engine.state.private import created_subdir
from harestart.engine.state.snapshots import COMPACT_AT, SnapshotFile, current
from harestart.errors import JournalError


def journal(tmp_path: Path) -> Journal:
    j = Journal(journal_path(tmp_path, "1", "lab"), "lab", "1", "inv.yml")
    for key in ("preflight", "stop_failover", "restart_replica:db2"):
        j.step(key)
    return j


def lines(j: Journal) -> list[dict[str, object]]:
    return [json.loads(x) for x in j.path.read_bytes().splitlines()]


def test_the_first_save_replaces_the_file_and_later_ones_append(tmp_path: Path) -> None:
    earlier = journal(tmp_path)
    earlier.outcome = "done"
    earlier.save()
    earlier.close()
    j = journal(tmp_path)
    j.save()
    inode = j.path.stat().st_ino
    assert [d["run_id"] for d in lines(j)] == [j.run_id]  # the earlier run's file is gone
    for status in ("running", "done"):
        j.step("preflight").status = status
        j.save()
    assert j.path.stat().st_ino == inode  # appended: the same file, no new one per save
    assert [d["steps"][0]["status"] for d in lines(j)] == ["pending", "running", "done"]  # type: ignore[index]
    found = find_journal(tmp_path, "1", "lab", None)
    assert found is not None and found.step("preflight").status == "done"
    j.close()


def test_a_line_cut_by_a_crash_is_not_the_journal(tmp_path: Path) -> None:
    """A power loss during an append leaves part of a line: that save never returned, so the
    snapshot before it is the journal (a resume continues from there)."""
    j = journal(tmp_path)
    j.save()
    j.step("preflight").status = "done"
    j.save()
    j.close()
    with j.path.open("ab") as f:
        f.write(b'{"version": 4, "group": "lab", "steps": [{"key": "pre')
    found = find_journal(tmp_path, "1", "lab", None)
    assert found is not None and found.step("preflight").status == "done"


def test_the_journals_earlier_harestarts_wrote_are_read(tmp_path: Path) -> None:
    j = journal(tmp_path)
    doc = {**j.to_dict(), "version": 3}
    doc["steps"][1]["status"] = "done"
    for text in (json.dumps(doc), json.dumps(doc, indent=2)):  # one line; indented
        j.path.parent.mkdir(mode=0o700, exist_ok=True)
        j.path.write_text(text)
        found = find_journal(tmp_path, "1", "lab", None)
        assert found is not None and found.step("stop_failover").status == "done"


@pytest.mark.parametrize(
    ("data", "snapshot"),
    [
        (b'{"a":1}\n{"a":2}\n', b'{"a":2}'),
        (b'{"a":1}\n{"a":2}\n{"a":', b'{"a":2}'),
        (b'{"a":1}', b'{"a":1}'),
        (b'{\n  "a": 1\n}', b'{\n  "a": 1\n}'),
        (b"", b""),
        (b"\n\n", b""),
    ],
)
def test_the_current_snapshot_is_the_last_complete_line(data: bytes, snapshot: bytes) -> None:
    assert current(data) == snapshot


def test_a_file_of_nothing_but_newlines_is_a_malformed_journal(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.path.parent.mkdir(mode=0o700)
    j.path.write_bytes(b"\n" * 100_000)
    with pytest.raises(JournalError, match="malformed journal"):
        find_journal(tmp_path, "1", "lab", None)


def test_the_file_is_replaced_again_before_it_outgrows_its_bound(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.step("preflight").detail = "x" * 20_000
    for _ in range(40):
        j.save()
    assert j.path.stat().st_size <= COMPACT_AT
    assert 1 < len(lines(j)) < 40
    j.close()


def test_a_failed_append_leaves_no_line_behind_the_cut_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that fails half-way (a full disk) must not have the next save's line glued to
    its remains: the next save replaces the file."""
    j = journal(tmp_path)
    j.save()
    real = os.write

    def half(fd: int, data: bytes | memoryview) -> int:
        real(fd, bytes(data)[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots, "write_all", half)
    with pytest.raises(OSError, match="No space left"):
        j.save()
    monkeypatch.undo()
    j.step("preflight").status = "done"
    j.save()
    assert [d["steps"][0]["status"] for d in lines(j)] == ["done"]  # type: ignore[index]
    j.close()


def test_a_journal_removed_while_open_is_written_whole_again(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.save()
    j.remove()
    assert not j.path.exists()
    j.save()
    assert len(lines(j)) == 1
    j.close()


def test_a_dropped_writer_closes_its_file(tmp_path: Path) -> None:
    with created_subdir(tmp_path, "journals") as d:
        writer = SnapshotFile(tmp_path / "journals" / "x.json")
        writer.replace(d, b"{}")
    closer = writer._closer
    assert closer is not None and closer.alive and writer.fd is not None
    del writer
    assert not closer.alive  # os.close(fd) ran


def test_appends_are_on_disk_when_the_save_returns(tmp_path: Path) -> None:
    """The journal's descriptor is open O_DSYNC: each append is written through, as a write
    followed by fdatasync would be (a save that returned survives a power loss)."""
    j = journal(tmp_path)
    j.save()
    assert j._file is not None and j._file.fd is not None
    assert fcntl.fcntl(j._file.fd, fcntl.F_GETFL) & os.O_DSYNC == os.O_DSYNC
    j.close()
