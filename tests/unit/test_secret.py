"""Secret values never render, and the last-line scrubber is safe to use from many threads."""

from __future__ import annotations

import sys
import threading

import pytest

from harestart.domain import secret
from harestart.domain.secret import Secret, scrub


@pytest.fixture(autouse=True)
def _own_known_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test fills its own set of known values (thousands here: the suite's stays small)."""
    monkeypatch.setattr(secret, "_KNOWN", set())


def test_secret_renders_as_mask_and_scrub_replaces_known_values() -> None:
    s = Secret("hunter2-password")
    assert str(s) == f"{s}" == "***" and "hunter2" not in repr(s)
    assert scrub("login failed for hunter2-password@db1") == "login failed for ***@db1"
    Secret("abc")  # too short to scrub safely: ordinary text would be mangled
    assert scrub("abc") == "abc"


def test_scrub_while_other_threads_add_secrets_never_fails() -> None:
    """Secrets are wrapped from other threads (parallel groups, API requests) while log lines
    are scrubbed; iterating the live set raised "Set changed size during iteration"."""
    adders, per_adder = 4, 1000
    start = threading.Barrier(adders + 1)
    done = threading.Event()
    errors: list[BaseException] = []
    scrubbed = [0]

    def add(n: int) -> None:
        start.wait(timeout=10)
        for i in range(per_adder):
            Secret(f"secret-{n}-{i:05d}")

    def scrub_until_done() -> None:
        start.wait(timeout=10)
        try:
            while not done.is_set():
                assert "secret-" not in scrub("nothing secret here")
                scrubbed[0] += 1
            assert scrub("it was secret-1-00042!") == "it was ***!"
        except BaseException as exc:  # any error here fails the test below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        threads = [threading.Thread(target=add, args=(n,)) for n in range(adders)]
        scrubber = threading.Thread(target=scrub_until_done)
        for t in (*threads, scrubber):
            t.start()
        for t in threads:
            t.join(timeout=60)
        done.set()
        scrubber.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert scrubbed[0] > 0 and len(secret._KNOWN) == adders * per_adder
