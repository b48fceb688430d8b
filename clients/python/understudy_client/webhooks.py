"""Verifying a webhook delivery: the Standard Webhooks signature and a fresh timestamp."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from understudy_client.errors import WebhookVerificationError

TOLERANCE_S = 300
_MAX_DIGITS = 20  # seconds since 1970 have 10 for the next two hundred years


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivery's envelope (``event``, ``created_at``, ``data``...) once it verifies.

    ``body`` must be the raw request body, byte for byte. Raises WebhookVerificationError for a
    missing header, a stale or future timestamp, or no matching ``v1`` signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as err:
        raise WebhookVerificationError(f"missing header {err.args[0]}") from err
    # int() would take " 1_7" and "١٧", and refuse 4,300 digits with a ValueError of its own
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_DIGITS):
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds")
    sent_at = int(timestamp)
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    try:
        raw = body.encode() if isinstance(body, str) else body
        signed = f"{msg_id}.{timestamp}.".encode() + raw
    except UnicodeEncodeError as err:  # a lone surrogate, which no HTTP message can carry
        raise WebhookVerificationError("the webhook-id or the body is not text") from err
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        # As bytes: compare_digest refuses text that is not ASCII with a TypeError.
        given = signature.encode("utf-8", "replace")
        if version == "v1" and hmac.compare_digest(given, expected):
            envelope: dict[str, Any] = json.loads(raw)
            return envelope
    raise WebhookVerificationError("no signature matches")
