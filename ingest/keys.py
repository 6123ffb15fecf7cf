"""The credential key ring: the secret keys of the hashes that replace faces, cards and plates.

A key file holds one key a line, ``<key id> <secret>``; the last line is the current key, the
lines above it are retired keys, kept only so that references made under them stay matchable.
A reference names the key that made it, ``<prefix>:<key id>.<digest>`` (e.g.
``plate:k2.5f1c09a2e4b7d3c80a11``): to find everyone who showed plate X, compute X's reference
under every key in the ring and look for any of them (``references``). References made before
key ids existed (``<prefix>:<digest>``) belong to the key with the empty id, which a ring may
hold as a line with the id ``-``.

``villagetwin setup`` makes the file (``ensure_key_file``), readable by its owner only;
``villagetwin credential-key rotate`` appends a new current key (docs/security.md).
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from devices.adapters import reference

LEGACY_KEY_ID = "-"
_DIGEST = re.compile(r"[0-9a-f]{20}")  # devices/adapters.py reference()


class KeyFileError(ValueError):
    """A key file that cannot be used."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]  # (key id, secret), the current one last

    @property
    def current(self) -> tuple[str, bytes]:
        """``(key id, secret)`` of the key new references are made with: the ring's last line."""
        return self.keys[-1]

    def references(self, prefix: str, value: object) -> set[str]:
        """``value``'s reference under every key held: what to look for when matching."""
        return {with_key_id(reference(prefix, secret, value), kid) for kid, secret in self.keys}


def with_key_id(ref: str, key_id: str) -> str:
    """``plate:<digest>`` made under key ``key_id`` as the stored reference."""
    prefix, _, digest = ref.partition(":")
    if key_id in ("", LEGACY_KEY_ID) or not _DIGEST.fullmatch(digest):
        return ref  # no key made it (e.g. "face:unmatched")
    return f"{prefix}:{key_id}.{digest}"


def parse(text: str) -> KeyRing:
    """Raises ``KeyFileError`` for an empty ring, a malformed line or a repeated key id."""
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) < 16 or "." in parts[0] or ":" in parts[0]:
            raise KeyFileError(f"line {number}: expected '<key id> <secret of 16+ characters>'")
        if any(kid == parts[0] for kid, _ in keys):
            raise KeyFileError(f"line {number}: key id {parts[0]!r} appears twice")
        keys.append((parts[0], parts[1].encode()))
    if not keys:
        raise KeyFileError("no key in the key file")
    return KeyRing(tuple(keys))


def load(path: Path) -> KeyRing:
    """Reads a key file; refuses one that others can read (it protects plates and faces)."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    return parse(path.read_text())


def _append_private(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
    os.chmod(path, 0o600)


def ensure_key_file(path: Path) -> bool:
    """Makes a key file with one random key (256 bits) if there is none; True if it did."""
    if path.exists():
        return False
    _append_private(path, f"k1 {secrets.token_hex(32)}")
    return True


def rotate(path: Path) -> str:
    """Appends a new current key; the old ones stay for matching. Returns the new key id."""
    ring = load(path)
    numbers = [int(kid[1:]) for kid, _ in ring.keys if kid[:1] == "k" and kid[1:].isdigit()]
    kid = f"k{max(numbers, default=0) + 1}"
    _append_private(path, f"{kid} {secrets.token_hex(32)}")
    return kid
