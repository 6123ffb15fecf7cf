"""Signing in: argon2id password hashes (argon2-cffi), roles, grid assignments, and sessions
that time out."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dashboard import queries

ROLES = ("admin", "manager", "inspector")
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    grids: tuple[str, ...]

    def may_see_grid(self, grid_code: str | None) -> bool:
        """Admins and managers see every grid; an inspector only the ones assigned."""
        return self.role != "inspector" or (grid_code is not None and grid_code in self.grids)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def authenticate(conn: psycopg.Connection, username: str, password: str) -> User | None:
    found = queries.app_user(conn, username.strip())
    if found is None:
        _HASHER.hash(password)  # the same work as for a real user: no timing hint
        return None
    role, hashed, grids = found
    try:
        _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(username.strip(), role, tuple(grids))
