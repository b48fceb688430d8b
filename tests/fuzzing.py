"""The fuzz tier's hypothesis settings, shared by its property-based tests."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(examples: int, long_examples: int) -> settings:
    """``examples`` a run, ``long_examples`` with ``HYPOTHESIS_PROFILE=long`` (when changing what
    the test covers). CI replays one fixed set of examples, so a landing never depends on luck;
    runs elsewhere draw new ones each time and are where new findings come from."""
    return settings(
        max_examples=long_examples if os.environ.get("HYPOTHESIS_PROFILE") == "long" else examples,
        deadline=None,
        database=None,
        derandomize=os.environ.get("CI") == "true",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
