"""Review points: where a task pauses for a person's approval before an irreversible step.

A ``review`` step is one; so is the first irreversible step of a task whose type the account
requires review for, when the run has passed no review point before it. At a review point a
task nobody approved yet records the page (the filled form) with a screenshot and raises
:class:`~worker.errors.ReviewRequested`: the runner then releases the task as
``pending_review``. An approved task runs again from the top and passes its review point,
recording who approved it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.sop.model import ReviewStep, Step
from worker.agent.handlers import At, handles
from worker.errors import ReviewRequested

if TYPE_CHECKING:
    from worker.agent.interpreter import Run


@dataclass(frozen=True)
class Review:
    """The task's review state, as a run needs it.

    ``required``: the account requires review for the task's type. ``approved``: a person
    approved the task (``reviewer`` and ``note`` say who, and what they said).
    """

    required: bool = False
    approved: bool = False
    reviewer: str | None = None
    note: str | None = None


@handles(ReviewStep)
def review(run: Run, step: ReviewStep, at: At) -> None:
    message = run.render(step.message) if step.message else ""
    review_point(run, at, title=run.title(step), message=message)


def before_irreversible(run: Run, step: Step, at: At) -> None:
    """A task whose type requires review does not pass an irreversible step unreviewed, even
    with an SOP that has no review step (or skipped it by its ``when``)."""
    if not run.review.required or run.review_passed or run.verifying:
        return
    title = run.title(step)
    name = f"{at.index}. Review before: {title}"
    review_point(run, At(at.index, name, datetime.now(UTC), at.t0), title=title)


def review_point(run: Run, at: At, *, title: str, message: str = "") -> None:
    """Pass an approved task; otherwise record the page and pause for a person."""
    from worker.agent.interpreter import StepStatus

    if run.review.approved:
        run.review_passed = True
        said = f": {run.review.note}" if run.review.note else ""
        who = run.review.reviewer or "a reviewer"
        run.record(at, StepStatus.OK, f"Approved by {who}{said}; going on")
        return
    what = f" ({message})" if message else ""
    run.record(at, StepStatus.OK, f"Waiting for a person's review{what}", shot=True)
    raise ReviewRequested(run.redactor.text(title))
