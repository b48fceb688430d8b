"""TOTP (RFC 6238) one-time codes from a stored secret, as an authenticator app makes them."""

from __future__ import annotations

import base64
import binascii
import re
import time

import pyotp

# pyotp wants 112 bits by default, but 80-bit secrets (16 base32 characters) are what many
# portals still issue, the sandbox's documented one among them.
MIN_SECRET_BITS = 80


class InvalidSecret(ValueError):
    """A TOTP secret that is not base32 or is too short."""


class _Totp(pyotp.TOTP):
    min_secret_length_bits = MIN_SECRET_BITS


def normalise_secret(value: str) -> str:
    """Base32 as authenticator apps show it (spaced, lower case, unpadded) -> canonical form."""
    return re.sub(r"[\s-]+", "", value).upper().rstrip("=")


def check_secret(value: str) -> str:
    """The canonical secret, or :class:`InvalidSecret` saying what is wrong with it."""
    secret = normalise_secret(value)
    try:
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError) as err:
        raise InvalidSecret("it must be base32 (letters A-Z and digits 2-7)") from err
    if len(raw) * 8 < MIN_SECRET_BITS:
        raise InvalidSecret(f"it must be at least {MIN_SECRET_BITS} bits long")
    return secret


def code(secret: str, *, at: float | None = None) -> str:
    """The 6-digit code for ``secret`` at time ``at`` (default: now)."""
    return _Totp(normalise_secret(secret)).at(time.time() if at is None else at)
