"""Unit-test isolation shared by every module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harestart.domain import secret


@pytest.fixture(autouse=True)
def _secrets_forgotten_after_each_test() -> Iterator[None]:
    """Every wrapped secret is remembered process-wide, so output scrubbing catches it later.
    A test that wraps arbitrary values (hypothesis passwords such as ``"0.se"``) would then
    mangle the messages another test on the same worker asserts (a flake that depended on
    which tests shared the worker): each test forgets the secrets it wrapped."""
    before = secret.remembered()
    yield
    secret.forget_all_but(before)
