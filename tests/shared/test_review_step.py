"""The `review` step in the SOP language: where it may stand, and where a task pauses."""

from __future__ import annotations

import pytest

from shared.review import review_point
from shared.sop.errors import SopInvalid
from shared.sop.library import builtin_sop, builtin_sop_text
from shared.sop.loader import load_sop

CLAIM_SOP = builtin_sop_text("submit_claim")
SUBMIT = "  - name: Submit the claim\n"


def _with(text: str, before: str = SUBMIT, source: str = CLAIM_SOP) -> str:
    assert before in source
    return source.replace(before, text + before, 1)


REVIEWED = _with('  - name: Check the claim\n    review: "{{ patient }}"\n')


def _errors(text: str) -> list[str]:
    with pytest.raises(SopInvalid) as exc:
        load_sop(text)
    return [e["message"] for e in exc.value.errors]


def test_a_review_step_loads_and_is_where_the_task_pauses():
    sop = load_sop(REVIEWED)
    assert review_point(sop) == "Check the claim"
    assert "Check the claim" in sop.summary()


def test_without_a_review_step_a_required_review_pauses_at_the_first_irreversible_step():
    assert review_point(builtin_sop("submit_claim")) == "Submit the claim"
    assert review_point(builtin_sop("check_eligibility")) is None


def test_review_true_says_nothing_more():
    sop = load_sop(_with("  - review: true\n"))
    assert "Pause for a person's review" in sop.summary()


@pytest.mark.parametrize(
    "text, message",
    [
        (_with("  - review: a\n  - review: b\n"), "at most one review step"),
        (_with("  - review: a\n    irreversible: true\n"), "cannot be irreversible or optional"),
        (_with("  - review: a\n    optional: true\n"), "cannot be irreversible or optional"),
        (_with("  - review: {what: x}\n"), "give `review: true`"),
        (
            _with("  - review: late\n", before="  - name: Wait for the confirmation\n"),
            "must come before the irreversible step",
        ),
        (
            _with("  - review: in verify\n", before='  - set: {verified: "true"}\n'),
            "verify steps cannot pause for review",
        ),
        (
            _with(
                "      - review: per line\n",
                before='      - fill: {label: "Service Date {{ loop.index }}"',
            ),
            "cannot be inside a loop",
        ),
    ],
)
def test_a_review_step_in_the_wrong_place_is_refused(text, message):
    assert any(message in m for m in _errors(text)), _errors(text)
