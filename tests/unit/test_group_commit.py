"""Lines from many threads (harestart/group_commit.py): those written while a thread writes
are written by that thread in its next round, in one write; none is lost or torn. The run log
(harestart/log.py LogFile) and the progress lines are written so."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from harestart import log
from harestart.group_commit import GroupCommit
from harestart.log import LogFile
from harestart.views.progress import TextReporter

WAIT = 10.0


class Blocking:
    """A sink whose first write waits until released: the writing thread, caught writing."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.in_write, self.release = threading.Event(), threading.Event()

    def __call__(self, text: str) -> None:
        self.writes.append(text)
        if len(self.writes) == 1:
            self.in_write.set()
            self.release.wait(WAIT)


def test_lines_of_many_threads_are_all_there_and_whole(tmp_path: Path) -> None:
    f = LogFile(tmp_path / "run.jsonl")
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
    records = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(records) == 8 * 500
    for n in range(8):  # each thread's records in the order it logged them
        assert [r["i"] for r in records if r["thread"] == n] == list(range(500))


def test_lines_written_during_a_write_are_written_by_the_writer_in_one_write() -> None:
    sink = Blocking()
    lines = GroupCommit(sink)
    writer = threading.Thread(target=lines.write, args=("first\n",))
    writer.start()
    assert sink.in_write.wait(WAIT)
    for i in range(5):  # return at once: the writing thread takes them
        lines.write(f"later {i}\n")
    assert sink.writes == ["first\n"]
    sink.release.set()
    writer.join(WAIT)
    assert sink.writes == ["first\n", "".join(f"later {i}\n" for i in range(5))]


def test_close_waits_for_the_writing_thread_and_then_drops_what_comes_later() -> None:
    sink = Blocking()
    lines = GroupCommit(sink)
    writer = threading.Thread(target=lines.write, args=("first\n",))
    writer.start()
    assert sink.in_write.wait(WAIT)
    closer = threading.Thread(target=lines.close)
    closer.start()
    lines.write("taken by the writer or by close\n")
    sink.release.set()
    closer.join(WAIT)
    writer.join(WAIT)
    lines.write("after close\n")
    assert "".join(sink.writes) == "first\ntaken by the writer or by close\n"


def test_a_failed_write_reaches_its_thread_and_the_next_line_writes_again() -> None:
    written: list[str] = []

    def sink(text: str) -> None:
        if "bad" in text:
            raise BrokenPipeError(32, "Broken pipe")
        written.append(text)

    lines = GroupCommit(sink)
    with pytest.raises(BrokenPipeError):
        lines.write("bad\n")
    lines.write("good\n")
    assert written == ["good\n"]


def test_a_log_file_that_cannot_be_written_is_said_once_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = LogFile(tmp_path / "run.jsonl")

    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "write_all", full)
    for _ in range(3):
        f.write("record\n")
    err = capsys.readouterr().err
    assert err.count("cannot write the log file") == 1 and "No space left" in err
    f.close()


def test_progress_lines_of_many_groups_are_all_there_and_whole() -> None:
    out = io.StringIO()
    reporter = TextReporter(out, prefix_group=True)

    def group(name: str) -> None:
        for i in range(200):
            reporter.progress(name, "db1", f"{i}")

    threads = [threading.Thread(target=group, args=(g,)) for g in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    lines = out.getvalue().splitlines()
    assert len(lines) == 800
    for g in "abcd":
        assert [x.rsplit(" ", 1)[1] for x in lines if f"[{g}]" in x] == [str(i) for i in range(200)]
