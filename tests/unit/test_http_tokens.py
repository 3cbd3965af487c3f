"""Tokens stored as SHA-256 digests (``sha256:<hex>``): the tokens file holds no usable secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest

from harestart.errors import UsageError
from harestart.http.api import TokenMap, parse_tokens, token_digest
from harestart.http.server import load_tokens

TOKEN = "87c6033c-9ff6-405f-943e-2deb73f278b7"
OTHER = "another-token-0123456789"


def digest_entry(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_a_digest_entry_authenticates_its_token_and_nothing_else(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yml"
    f.write_text(f'"{digest_entry(TOKEN)}": "1234"\n"{OTHER}": "5678"\n')
    tokens = load_tokens(str(f), None)
    assert tokens.account(TOKEN) == "1234"  # hashed entry
    assert tokens.account(OTHER) == "5678"  # plain tokens still work beside it
    assert tokens.account(digest_entry(TOKEN)) is None  # the digest itself is no token
    assert tokens.account(TOKEN[:-1]) is None and tokens.account("") is None
    assert TOKEN not in f.read_text()


def test_upper_case_hex_digest_and_json_file(tmp_path: Path) -> None:
    upper = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest().upper()
    assert parse_tokens(json.dumps({upper: 1234}), "t.json").account(TOKEN) == "1234"


def test_sha256sum_output_is_what_the_file_holds() -> None:
    """The docs' recipe (docs/how-to/serve-tls.md), ``printf %s TOKEN | sha256sum``, gives the digest entry."""
    out = subprocess.run(
        ["sha256sum"], input=TOKEN.encode(), capture_output=True, check=True, timeout=10
    )
    hexdigest = out.stdout.decode().split()[0]
    assert parse_tokens(f'"sha256:{hexdigest}": "1234"', "t.yml").account(TOKEN) == "1234"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("sha256:abc", "64 hexadecimal digits"),
        ("sha256:" + "g" * 64, "64 hexadecimal digits"),
        ("sha256:" + "a" * 63, "64 hexadecimal digits"),
    ],
)
def test_malformed_digests_are_refused_with_the_line(key: str, says: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_tokens(f'"{OTHER}": "1"\n"{key}": "1234"\n', "t.yml")
    assert f"t.yml:2: entry 2: a digest must be sha256: and {says}" in str(exc.value)
    assert OTHER not in str(exc.value)


def test_a_token_listed_both_plain_and_as_its_digest_is_refused() -> None:
    with pytest.raises(UsageError) as exc:
        parse_tokens(f'"{TOKEN}": "1234"\n"{digest_entry(TOKEN)}": "5678"\n', "t.yml")
    assert "t.yml:2: entry 2: the same token as entry 1" in str(exc.value)
    assert TOKEN not in str(exc.value)


def test_every_entry_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # api.py calls hmac.compare_digest
    tokens = TokenMap({digest_entry(TOKEN): "1234", OTHER: "5678"})
    assert tokens.account(OTHER) == "5678"
    assert len(calls) == 2  # both entries, though the first did not match
    assert {a for a, _ in calls} == {token_digest(digest_entry(TOKEN)), token_digest(OTHER)}
