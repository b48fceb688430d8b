"""The built-in task types; each has a built-in SOP in ``shared/sop/library/<type>.yaml``.

An account may add task types of its own by storing an SOP for a new name (``store``).
"""

from __future__ import annotations

TASK_TYPES = (
    "check_eligibility",
    "submit_claim",
    "submit_prior_authorization",
    "submit_appeal",
    "check_claim_status",
)
