"""Opaque keyset cursors shared by every list endpoint."""

from __future__ import annotations

import base64
import binascii

from api.errors import ApiError
from api.limits import query_value
from shared.db import whole_number


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        # An id this API gave out: a bigint's ASCII digits. A bigger or negative number would be
        # compared as numeric, which no index serves: a walk through the whole table.
        number = whole_number(value, 19) if kind == "id" else None
        if number is None or number > 2**63 - 1:
            raise ValueError(kind)
        return number
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_cursor", "The cursor is not one this API gave out.") from exc


def page_limit(default: int, maximum: int) -> int:
    raw = query_value("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise ApiError(400, "bad_limit", f"limit must be a whole number from 1 to {maximum}.")
    return limit


def page(items: list[dict], rows: list[dict], limit: int, *, key: str = "id") -> dict:
    """The list envelope: ``data`` plus the cursor of the next page, if there is one.

    ``rows`` are the ``limit + 1`` read, ordered by ``key`` (an id, or a version number) with
    the newest first: the cursor is the ``key`` of the last row shown.
    """
    has_more = len(rows) > limit
    next_cursor = encode_cursor(rows[limit - 1][key]) if has_more else None
    return {"data": items[:limit], "has_more": has_more, "next_cursor": next_cursor}
