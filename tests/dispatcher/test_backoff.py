"""The retry schedule as a pure function: the schedule, jitter, Retry-After and its cap."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dispatcher.backoff import compute_backoff, parse_retry_after
from shared.settings import DEFAULT_WEBHOOK_SCHEDULE_S

SCHEDULE = DEFAULT_WEBHOOK_SCHEDULE_S


def test_default_schedule_is_svix_like():
    # immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize("attempts_made", range(1, 8))
def test_without_jitter_the_delay_is_the_schedule_entry(attempts_made):
    delay = compute_backoff(attempts_made, schedule_s=SCHEDULE, jitter=0)
    assert delay == SCHEDULE[attempts_made]


def test_after_the_last_entry_the_message_is_exhausted():
    assert compute_backoff(len(SCHEDULE), schedule_s=SCHEDULE, jitter=0.2) is None
    assert compute_backoff(99, schedule_s=SCHEDULE, jitter=0.2) is None


def test_jitter_stays_within_its_band_and_varies():
    rng = random.Random(7)
    delays = [compute_backoff(2, schedule_s=SCHEDULE, jitter=0.2, rng=rng) for _ in range(200)]
    assert all(240 <= d <= 360 for d in delays)
    assert len(set(delays)) > 100


def test_retry_after_is_a_floor_up_to_the_cap():
    # asks for longer than the schedule: honoured
    assert compute_backoff(1, schedule_s=SCHEDULE, jitter=0, retry_after_s=60) == 60
    # asks for less than the schedule: the schedule still applies
    assert compute_backoff(2, schedule_s=SCHEDULE, jitter=0, retry_after_s=1) == 300
    # asks for more than the cap: the cap
    delay = compute_backoff(1, schedule_s=SCHEDULE, jitter=0, retry_after_s=10**6,
                            retry_after_cap_s=3600)  # fmt: skip
    assert delay == 3600


def test_retry_after_does_not_revive_an_exhausted_message():
    assert compute_backoff(8, schedule_s=SCHEDULE, jitter=0, retry_after_s=5) is None


def test_parse_retry_after_seconds_and_http_dates():
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 7 ") == 7
    http_date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(http_date, now) == 90
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


def test_retry_after_of_unicode_digits_is_ignored():
    # A receiver's header is decoded as latin-1: '²' isdigit() but float() refuses it.
    assert parse_retry_after("\u00b2") is None
    assert parse_retry_after("120") == 120.0
