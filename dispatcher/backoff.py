"""When to try a failed message again: the schedule, jitter and the receiver's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def compute_backoff(
    attempts_made: int,
    *,
    schedule_s: Sequence[float],
    jitter: float,
    retry_after_s: float | None = None,
    retry_after_cap_s: float = 3600.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts, or None when exhausted.

    ``schedule_s[n]`` is the delay before attempt n + 1 (the first entry, normally 0, is the
    first attempt), scaled by a random factor in [1 - jitter, 1 + jitter] so a burst of failures
    does not come back as a burst. A Retry-After, capped, is a floor: we never come back sooner
    than the receiver asked, nor later than the schedule would have anyway if it asked for less.
    """
    if attempts_made >= len(schedule_s):
        return None
    factor = 1.0 + (rng or random).uniform(-jitter, jitter) if jitter else 1.0
    delay = max(0.0, schedule_s[attempts_made] * factor)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, retry_after_cap_s))
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not '²', which isdigit() but float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
