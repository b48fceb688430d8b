"""A versioned document's history as the API shows it: the newest HISTORY_SHOWN versions beside
the document (``history``, ``history_has_more``), and every version a page at a time
(``/versions``), for SOPs and portal profiles alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.limits import query_value
from api.pagination import decode_cursor, page, page_limit
from shared.tasks import iso
from shared.versions import HISTORY_SHOWN, VERSIONS_PAGE_MAX

# Reads up to limit + 1 versions older than a version (all when None), newest first.
ReadVersions = Callable[[int | None, int], list[dict]]


def _entry(row: dict) -> dict[str, Any]:
    return {
        "version": row["version"],
        "digest": row["digest"],
        "created_at": iso(row["created_at"]),
    }


def _page(rows: list[dict], limit: int) -> dict[str, Any]:
    return page([_entry(row) for row in rows[:limit]], rows, limit, key="version")


def history_json(rows: list[dict]) -> dict[str, Any]:
    """``history`` (the newest versions, from ``HISTORY_SHOWN + 1`` rows) and whether older
    ones exist: an account may store any number, and a read must stay small."""
    shown = _page(rows, HISTORY_SHOWN)
    return {"history": shown["data"], "history_has_more": shown["has_more"]}


def versions_page(read: ReadVersions) -> dict[str, Any]:
    """One page of versions, newest first, as the request's ``limit`` and ``cursor`` ask: the
    first page by default is the document's ``history``."""
    limit = page_limit(HISTORY_SHOWN, VERSIONS_PAGE_MAX)
    return _page(read(decode_cursor(query_value("cursor")), limit), limit)
