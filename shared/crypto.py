"""Encryption at rest for portal credentials, TOTP secrets and webhook signing secrets.

MultiFernet encrypts with the first key and decrypts with any, so keys rotate by prepending a new
one to ``ENCRYPTION_KEYS`` and re-encrypting at leisure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import Settings

__all__ = ["InvalidToken", "decrypt_json", "encrypt_json", "load_fernet"]


def _dev_key(run_dir: Path) -> str:
    """A key kept in run_dir, made on first use, for the embedded stack only."""
    path = run_dir / "encryption.key"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def load_fernet(settings: Settings) -> MultiFernet:
    """The configured keys, or the development key kept under run_dir."""
    keys = settings.encryption_keys or (_dev_key(settings.run_dir),)
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt_json(fernet: MultiFernet, value: dict[str, Any]) -> bytes:
    return fernet.encrypt(json.dumps(value).encode())


def decrypt_json(fernet: MultiFernet, token: bytes) -> dict[str, Any]:
    return json.loads(fernet.decrypt(bytes(token)))
