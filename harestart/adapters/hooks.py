"""Hooks on the bastion: the one place harestart runs a local command (``HookRunner``).

``/bin/sh -c COMMAND`` in the inventory file's directory, stdin from /dev/null, stdout and
stderr together into a temporary file (a pipe would block a chatty hook, and a background
child holding it open would hang the read), in a session of its own: a terminal's Ctrl-C is
harestart's to handle (the hook finishes like any action in flight), and on timeout the whole
process group is killed (SIGKILL), children included. Only the end of the output is kept.
The environment is exactly the one given (the engine builds it from an allow-list): nothing of
harestart's own is added here.

``start`` runs a persistent program the same way (its own session, the given environment, the
inventory file's directory, stderr into a temporary file), with pipes on its stdin and stdout
for the JSON lines of ``harestart.domain.hook_protocol``; ``PipeProgram.exchange`` writes one
line and reads one back against a deadline with the standard library's ``selectors`` (no
thread, no library needed for one line each way). What the line means is the domain's to judge.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import IO

from harestart.domain.hook_protocol import MAX_LINE_BYTES, Exchange
from harestart.domain.hooks import OUTPUT_TAIL_BYTES, HookOutcome
from harestart.errors import RemoteError

SHELL = "/bin/sh"
STOP_GRACE = 5.0  # seconds a persistent program gets to exit once its stdin is closed
TERM_GRACE = 5.0  # ... and then after SIGTERM, before SIGKILL
LATE = "late"  # an exchange's problems that are not messages: the deadline passed,
CLOSED = "it closed its stdout without answering"  # ... or its stdout ended


class SubprocessHookRunner:
    """``HookRunner`` through ``subprocess`` on this machine."""

    def __init__(
        self,
        tail_bytes: int = OUTPUT_TAIL_BYTES,
        *,
        stop_grace: float = STOP_GRACE,
        term_grace: float = TERM_GRACE,
    ) -> None:
        self.tail_bytes = tail_bytes
        self.stop_grace, self.term_grace = stop_grace, term_grace

    def start(self, command: str, *, cwd: str, env: Mapping[str, str]) -> PipeProgram:
        # Open as long as the program runs: PipeProgram.stop closes it.
        err = tempfile.TemporaryFile(prefix="harestart-hook-")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [SHELL, "-c", command],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            err.close()
            raise RemoteError("bastion", f"start hook `{command}` in {cwd}", str(exc)) from exc
        return PipeProgram(proc, err, self)

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        with tempfile.TemporaryFile(prefix="harestart-hook-") as out:
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(
                    [SHELL, "-c", command],
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RemoteError("bastion", f"run hook `{command}` in {cwd}", str(exc)) from exc
            exit_status = _wait(proc, timeout)
            duration = time.monotonic() - t0
            return HookOutcome(
                command=command,
                exit_status=exit_status,
                duration_s=duration,
                output=_tail(out, self.tail_bytes),
                timeout=timeout,
            )


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit status, or None after killing the process group at the deadline. Whatever
    interrupts the wait (a second Ctrl-C) also kills the group: nothing is left behind."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone, children included
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is its group's id
    proc.wait()


def _tail(f: IO[bytes], limit: int) -> str:
    """The last ``limit`` bytes written (a character cut in two is replaced, not fatal)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    return f.read().decode("utf-8", errors="replace")


class PipeProgram:
    """A persistent hook program on pipes (``HookProgram``). One exchange at a time (a lock);
    a program that is stopped answers every later exchange with ``problem`` set."""

    def __init__(
        self, proc: subprocess.Popen[bytes], err: IO[bytes], runner: SubprocessHookRunner
    ) -> None:
        if proc.stdin is None or proc.stdout is None:  # pragma: no cover - start gives pipes
            raise RuntimeError("a persistent hook program needs pipes on stdin and stdout")
        self.proc, self._err, self._runner = proc, err, runner
        self._stdin, self._stdout = proc.stdin, proc.stdout
        self._in, self._out = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._pending = b""  # read beyond the last answer's newline
        self._reported = 0  # stderr bytes already handed out with an exchange
        self._lock = threading.Lock()
        self._stopped: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exchange(self, line: str, *, timeout: float) -> Exchange:
        with self._lock:
            t0 = time.monotonic()
            if self._stopped is not None:
                return Exchange(None, 0.0, problem=f"the program was stopped ({self._stopped})")
            try:
                answer, problem = self._exchange(line, t0 + timeout)
            except BaseException:  # a second Ctrl-C: nothing is left behind
                self._stop(polite=False)
                raise
            status = None
            if problem == CLOSED:  # its stdout ended: it ended, or is ending (until the deadline)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    status = self.proc.wait(timeout=max(0.0, t0 + timeout - time.monotonic()))
            return Exchange(
                answer,
                time.monotonic() - t0,
                output=self._stderr_since(),
                timed_out=problem == LATE,
                exit_status=status,
                problem=problem if problem not in (LATE, None) and status is None else None,
            )

    def _exchange(self, line: str, deadline: float) -> tuple[str | None, str | None]:
        """(the answer line, None) or (None, what went wrong: LATE, CLOSED or another)."""
        if self._pending or self._readable_now():
            return None, "it wrote more than one line for the previous exchange"
        data = line.encode() + b"\n"
        with selectors.DefaultSelector() as sel:
            sel.register(self._in, selectors.EVENT_WRITE)
            while data:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    return None, LATE
                try:
                    data = data[os.write(self._in, data) :]
                except BrokenPipeError:  # it is gone: its stdout says how
                    break
        return self._read_line(deadline)

    def _readable_now(self) -> bool:
        """Whether something unread is already there (an answer nobody asked for)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._out, selectors.EVENT_READ)
            if not sel.select(0):
                return False
        chunk = os.read(self._out, MAX_LINE_BYTES)
        self._pending += chunk
        return bool(chunk)

    def _read_line(self, deadline: float) -> tuple[str | None, str | None]:
        buf = b""
        too_long = f"an answer longer than {MAX_LINE_BYTES} bytes"
        with selectors.DefaultSelector() as sel:
            sel.register(self._out, selectors.EVENT_READ)
            while b"\n" not in buf:
                if len(buf) > MAX_LINE_BYTES:
                    return None, too_long
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    return None, LATE
                chunk = os.read(self._out, MAX_LINE_BYTES + 1)
                if not chunk:
                    return None, CLOSED
                buf += chunk
        answer, _, self._pending = buf.partition(b"\n")
        if len(answer) > MAX_LINE_BYTES:
            return None, too_long
        return answer.decode("utf-8", errors="replace"), None

    def _stderr_since(self) -> str:
        """The end of what it wrote on stderr since the previous exchange. Read with pread:
        the file's offset is the program's too (one open file), so a seek here would make a
        write of its own land in the middle of the file."""
        fd = self._err.fileno()
        size = os.fstat(fd).st_size
        start = max(self._reported, size - self._runner.tail_bytes)
        text = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
        self._reported = size
        return text

    def stop(self, *, polite: bool = True) -> str:
        with self._lock:
            return self._stop(polite=polite)

    def _stop(self, *, polite: bool) -> str:
        if self._stopped is None:
            self._stopped = self._end(polite)
            self._stdout.close()
            self._err.close()
        return self._stopped

    def _end(self, polite: bool) -> str:
        """Close its stdin (the protocol's end), then SIGTERM, then SIGKILL its group."""
        with contextlib.suppress(OSError):  # a pipe it already closed
            self._stdin.close()
        if polite:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return _ended(self.proc.wait(timeout=self._runner.stop_grace))
        for sig, grace, how in ((signal.SIGTERM, self._runner.term_grace, "terminated"),
                                (signal.SIGKILL, None, "killed")):  # fmt: skip
            if self.proc.poll() is not None:
                return _ended(self.proc.returncode)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
                return how
        return "killed"  # pragma: no cover - SIGKILL's wait has no timeout


def _ended(status: int) -> str:
    return f"killed by signal {-status}" if status < 0 else f"exited {status}"
