"""Encryption at rest for portal credentials, TOTP secrets and webhook signing secrets.

MultiFernet encrypts with the first key and decrypts with any, so keys rotate by prepending a new
one to ``ENCRYPTION_KEYS`` and re-encrypting at leisure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import Settings

__all__ = [
    "InvalidToken",
    "decrypt_json",
    "digest_keys",
    "encrypt_json",
    "keyed_digest",
    "load_fernet",
]


def _dev_key(run_dir: Path) -> str:
    """A key kept in run_dir, made on first use, for the embedded stack only.

    The processes of a first `make run` all start at once on a new run dir: each writes a key
    of its own aside, then links it into place, which only the first link does. Every process
    then reads that one key, and none reads a key half written.
    """
    path = run_dir / "encryption.key"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        aside = run_dir / f".encryption.key.{os.getpid()}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process's key landed first: it is the one
        finally:
            aside.unlink()
    return path.read_text().strip()


def _keys(settings: Settings) -> tuple[str, ...]:
    """The configured keys, newest first, or the development key kept under run_dir."""
    return settings.encryption_keys or (_dev_key(settings.run_dir),)


def load_fernet(settings: Settings) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in _keys(settings)])


def digest_keys(settings: Settings) -> tuple[bytes, ...]:
    """HMAC keys derived from the encryption keys, newest first.

    A digest of something that may hold a secret (a request body with a sensitive input) is
    keyed, so a copy of the database is no dictionary against it. One key per encryption key,
    so a digest stored before a key rotation still matches after it.
    """
    return tuple(
        hashlib.sha256(b"understudy request digest\0" + key.encode()).digest()
        for key in _keys(settings)
    )


def keyed_digest(key: bytes, parts: list[bytes]) -> str:
    """The HMAC-SHA256 of the parts, each length-prefixed so no two lists give the same bytes."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def encrypt_json(fernet: MultiFernet, value: dict[str, Any]) -> bytes:
    return fernet.encrypt(json.dumps(value).encode())


def decrypt_json(fernet: MultiFernet, token: bytes) -> dict[str, Any]:
    return json.loads(fernet.decrypt(bytes(token)))
