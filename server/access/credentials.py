"""Credentials as they are made and stored: device tokens and one-time enrolment codes, each
shown once and kept only as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["hash_token", "new_code", "new_token", "normalise_code"]

# Enrolment codes: 12 symbols of Crockford's base32 (60 bits), typed by a person in groups of 4.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 12


def hash_token(token: str) -> str:
    # 256 random bits need no slow hash: SHA-256 makes a leaked table useless.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A device token: 256 random bits, shown once, stored only as its hash."""
    return f"gs_{secrets.token_urlsafe(32)}"


def normalise_code(code: str) -> str:
    """An enrolment code as typed (any case, with spaces or dashes) in its canonical form."""
    return (
        "".join(code.split()).replace("-", "").upper().replace("O", "0").replace("I", "1").replace("L", "1")
    )


def new_code() -> str:
    symbols = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(symbols[i : i + 4] for i in range(0, _CODE_LENGTH, 4))
