"""The run log file (harestart/logfile.py): records logged while a thread writes are written by
that thread in its next round, in one write; none is lost or torn."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from harestart import logfile
from harestart.engine.state import private
from harestart.logfile import LogFile

WAIT = 10.0


def log_file(tmp_path: Path) -> tuple[LogFile, Path]:
    path = tmp_path / "run.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return LogFile(fd, path), path


def test_records_of_many_threads_are_all_there_and_whole(tmp_path: Path) -> None:
    f, path = log_file(tmp_path)
    start = threading.Barrier(8, timeout=WAIT)

    def logs(t: int) -> None:
        start.wait()
        for i in range(500):
            f.write(json.dumps({"thread": t, "i": i, "pad": "x" * (i % 300)}) + "\n")

    threads = [threading.Thread(target=logs, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    f.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 8 * 500
    for n in range(8):  # each thread's records in the order it logged them
        assert [r["i"] for r in records if r["thread"] == n] == list(range(500))


def test_records_logged_during_a_write_are_written_by_the_writer_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, path = log_file(tmp_path)
    writes: list[bytes] = []
    in_write, release = threading.Event(), threading.Event()
    real = private.write_all

    def slow(fd: int, data: bytes) -> None:
        writes.append(data)
        if len(writes) == 1:  # the first write waits until the others logged
            in_write.set()
            release.wait(WAIT)
        real(fd, data)

    monkeypatch.setattr(logfile, "write_all", slow)
    writer = threading.Thread(target=f.write, args=("first\n",))
    writer.start()
    assert in_write.wait(WAIT)
    for i in range(5):  # return at once: the writing thread takes them
        f.write(f"later {i}\n")
    assert path.read_text() == "" and len(writes) == 1
    release.set()
    writer.join(WAIT)
    assert writes[1:] == [b"".join(f"later {i}\n".encode() for i in range(5))]
    assert path.read_text().splitlines() == ["first", *(f"later {i}" for i in range(5))]
    f.close()


def test_a_file_that_cannot_be_written_is_said_once_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f, _ = log_file(tmp_path)

    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logfile, "write_all", full)
    for _ in range(3):
        f.write("record\n")
    err = capsys.readouterr().err
    assert err.count("cannot write the log file") == 1 and "No space left" in err
    f.close()


def test_close_waits_for_the_writing_thread_and_then_drops_what_comes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, path = log_file(tmp_path)
    in_write, release = threading.Event(), threading.Event()
    real = private.write_all

    def slow(fd: int, data: bytes) -> None:
        if not in_write.is_set():
            in_write.set()
            release.wait(WAIT)
        real(fd, data)

    monkeypatch.setattr(logfile, "write_all", slow)
    writer = threading.Thread(target=f.write, args=("first\n",))
    writer.start()
    assert in_write.wait(WAIT)
    closer = threading.Thread(target=f.close)
    closer.start()
    release.set()
    closer.join(WAIT)
    writer.join(WAIT)
    f.write("after close\n")
    assert path.read_text() == "first\n"
