"""Password hashes: bcrypt, with the same work whether or not there is a hash to check against."""

from __future__ import annotations

import functools
import re
import secrets

import bcrypt

_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d+\$.{53}$")


def hash_password(password: str) -> str:
    """A bcrypt hash of `password` (already stripped by the rules), with a fresh salt."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def is_hash(value: object) -> bool:
    return isinstance(value, str) and bool(_BCRYPT_HASH.match(value))


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def password_matches(password: str, stored: object) -> bool:
    """Whether `password` matches the hash `stored`; a missing hash costs as much as a real one."""
    real = is_hash(stored)
    try:
        matches = bcrypt.checkpw(password.strip().encode(), (stored if real else _decoy_hash()).encode())
    except ValueError:  # bcrypt 5 refuses passwords over 72 bytes
        return False
    return real and matches


def spend_a_hash() -> None:
    """Do the work of hashing a password, so that a refusal takes as long as an acceptance."""
    hash_password(secrets.token_urlsafe(16))
