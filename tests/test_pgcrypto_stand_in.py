"""The pgcrypto stand-ins (villagetwin/compat/pgcrypto.sql) for a PostgreSQL without pgcrypto
(the embedded wheel): PBKDF2 equal to Python's hashlib (RFC 8018), digest equal to the real
pgcrypto's, crypt/gen_salt as vt_sign_in uses them. Installed in a schema of their own in a
test database, beside the real pgcrypto in public; the embedded demo's sign-in on the wheel is
tests/test_embedded.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources

import psycopg
import pytest


@pytest.fixture
def stand_in(db: str) -> Iterator[psycopg.Connection]:
    text = resources.files("villagetwin.compat").joinpath("pgcrypto.sql").read_text("utf-8")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA standin")
        conn.execute("SET search_path = standin")
        conn.execute(text.encode())
        yield conn


@pytest.mark.parametrize(
    ("password", "salt", "iterations"),
    [
        (b"secret", b"salt", 1),
        (b"secret", b"salt", 1000),
        ("密码 passw0rd 长".encode(), bytes(range(16)), 37),
        (b"k" * 65, b"s" * 40, 3),  # a key longer than SHA-256's block is hashed first
        (b"", b"salt", 2),
    ],
)
def test_pbkdf2_is_rfc_8018s(
    stand_in: psycopg.Connection, password: bytes, salt: bytes, iterations: int
) -> None:
    row = stand_in.execute(
        "SELECT vt_pbkdf2_sha256(%s, %s, %s)", (password, salt, iterations)
    ).fetchone()
    assert row is not None
    assert bytes(row[0]) == hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def test_crypt_and_gen_salt_check_a_password_as_vt_sign_in_does(
    stand_in: psycopg.Connection,
) -> None:
    row = stand_in.execute("SELECT crypt('正确 horse', gen_salt('bf', 4))").fetchone()
    assert row is not None
    stored: str = row[0]
    _, scheme, n, salt, key = stored.split("$")
    assert (scheme, n) == ("pbkdf2-sha256", str(25 * 2**4))
    assert (
        key == hashlib.pbkdf2_hmac("sha256", "正确 horse".encode(), bytes.fromhex(salt), 400).hex()
    )
    same = stand_in.execute("SELECT crypt('正确 horse', %s) = %s", (stored, stored)).fetchone()
    wrong = stand_in.execute("SELECT crypt('正确 hors', %s) = %s", (stored, stored)).fetchone()
    assert same == (True,) and wrong == (False,)
    # Two salts never repeat; the bcrypt dummy of an unknown user matches nothing stored.
    salts = stand_in.execute("SELECT gen_salt('bf', 4), gen_salt('bf', 4)").fetchone()
    assert salts is not None and salts[0] != salts[1]
    dummy = stand_in.execute(
        "SELECT crypt('', '$2a$10$abcdefghijklmnopqrstuu') = %s", (stored,)
    ).fetchone()
    assert dummy == (False,)
    with pytest.raises(psycopg.errors.RaiseException, match="only bf"):
        stand_in.execute("SELECT gen_salt('md5', 4)")


def test_digest_and_random_bytes_equal_pgcryptos(stand_in: psycopg.Connection) -> None:
    stand_in.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public")
    for text in ["", "token 令牌", "x" * 1000]:
        ours = stand_in.execute("SELECT standin.digest(%s::text, 'sha256')", (text,)).fetchone()
        theirs = stand_in.execute("SELECT public.digest(%s::text, 'sha256')", (text,)).fetchone()
        assert ours == theirs and ours is not None
        assert bytes(ours[0]) == hashlib.sha256(text.encode()).digest()
    tokens = {
        bytes(r[0])
        for r in stand_in.execute("SELECT gen_random_bytes(32) FROM generate_series(1, 200)")
    }
    assert len(tokens) == 200 and all(len(t) == 32 for t in tokens)
    sizes = stand_in.execute("SELECT length(gen_random_bytes(1)), length(gen_random_bytes(70))")
    assert sizes.fetchone() == (1, 70)
    with pytest.raises(psycopg.errors.RaiseException, match="only sha256"):
        stand_in.execute("SELECT standin.digest('x'::text, 'md5')")
