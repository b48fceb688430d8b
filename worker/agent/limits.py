"""How much of a portal's pages one run keeps (README "Limits").

A portal page is as hostile as any input: a table of 200,000 rows or a text of millions of
characters would otherwise go whole into the run's variables, its result, Postgres, the API and
the webhook body. One extracted value keeps at most ``rows`` rows and ``chars`` characters of
page text (cut in the browser, so the rest never crosses WebDriver), and the run's result at
most ``result_bytes`` bytes of JSON. Going over is not a failure (the portal, not the task, is
at fault, and what was kept is often all the task needs): the run ends completed_with_issues
with a note that names the step, what the page had and the setting.

What one task stores of its trajectory is bounded too (:class:`Trajectory`): an SOP that loops
(a `while` that takes a screenshot each round, nested `while`s of `set` steps) would otherwise
store rows and screenshots for as long as TASK_TIME_LIMIT_S lets it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from worker.agent.interpreter import Outcome

# What the browser sends past a cut: a secret the page shows across the cut point is whole in
# it, so the redactor masks it before the exact cut (which would leave a fragment it can't
# tell). Longer than any secret in any of the forms the redactor knows.
SLACK_CHARS = 4096
# The cuts the notes tell in full; the others are named (their steps' messages say the rest).
_CUTS_TOLD = 3


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of what one run keeps; the settings' defaults unless given."""

    rows: int = Settings.max_extract_rows
    chars: int = Settings.max_extract_chars
    result_bytes: int = Settings.max_result_bytes

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        return cls(settings.max_extract_rows, settings.max_extract_chars, settings.max_result_bytes)


@dataclass
class Trajectory:
    """What one task may store of its trajectory, and what it stored: at most ``max_steps``
    steps and ``max_screenshots`` screenshots, every run of the task together (one claim's runs
    share one; the next claim starts from the count stored)."""

    max_steps: int = Settings.max_task_steps
    max_screenshots: int = Settings.max_task_screenshots
    steps: int = 0
    screenshots: int = 0
    # Screenshots the task would have taken past ``max_screenshots``: the notes say how many.
    left_out: int = 0

    @classmethod
    def of(cls, settings: Settings, *, steps: int = 0, screenshots: int = 0) -> Trajectory:
        return cls(settings.max_task_steps, settings.max_task_screenshots, steps, screenshots)

    def full(self) -> bool:
        """Whether the task has stored all the steps it may."""
        return self.steps >= self.max_steps

    def take_screenshot(self) -> bool:
        """Whether a screenshot may be stored now (counted as one if so, as left out if not)."""
        if self.screenshots < self.max_screenshots:
            self.screenshots += 1
            return True
        self.left_out += 1
        return False

    def note(self) -> str | None:
        """What the notes add when screenshots were left out; None if none were."""
        if not self.left_out:
            return None
        return (
            f"{self.left_out:,} screenshot(s) were not stored: a task stores at most"
            f" {self.max_screenshots:,} (MAX_TASK_SCREENSHOTS); the steps are in the trajectory"
            " without them."
        )

    def told(self, notes: str) -> str:
        """``notes``, then what was left out, if anything was."""
        said = self.note()
        return joined(notes, [said]) if said else notes


@dataclass(frozen=True)
class Cut:
    """An extract that kept less than the page had: where, into what, and why (each reason
    names its setting)."""

    where: str  # "step 2 (Read the rows of ...)"
    into: str
    reasons: tuple[str, ...]

    def note(self) -> str:
        return f"At {self.where}, the page had more than a task keeps: {'; '.join(self.reasons)}."


def cut_text(text: str, limit: int) -> str:
    """``text``, cut to its first ``limit`` characters."""
    return text[:limit]


def cut_cells(rows: list[list[list[Any]]], limit: int) -> tuple[list[list[list[Any]]], bool]:
    """Table rows (``[[is_header, text], ...]`` per row) holding at most ``limit`` characters
    of cell text in all, the first ones kept; and whether any were left out."""
    out: list[list[list[Any]]] = []
    left = limit
    for row in rows:
        kept: list[list[Any]] = []
        for is_header, text in row:
            if left <= 0 and text:
                return out + ([kept] if kept else []), True
            kept.append([is_header, text[:left]])
            left -= len(text)
        out.append(kept)
    return out, left < 0


def bounded(
    outcome: Outcome, cuts: list[Cut], max_bytes: int, trajectory: Trajectory | None = None
) -> Outcome:
    """``outcome`` with its result within ``max_bytes``, its extracts' cuts and the screenshots
    it did not store told: then a ``completed`` run is ``completed_with_issues``, and the notes
    say what was left out."""
    result, dropped = _within(outcome.result, max_bytes)
    said = [cut.note() for cut in cuts[:_CUTS_TOLD]]
    if len(cuts) > _CUTS_TOLD:
        said.append(
            f"{len(cuts) - _CUTS_TOLD} more extract(s) kept less than the page had: "
            + ", ".join(f"`{cut.into}`" for cut in cuts[_CUTS_TOLD:])
            + " (the trajectory says where)."
        )
    if dropped:
        left_out = ", ".join(f"`{key}` ({size:,} bytes)" for key, size in dropped)
        said.append(
            f"The result was over {max_bytes:,} bytes of JSON (MAX_RESULT_BYTES): {left_out}"
            " left out (null), the largest first."
        )
    if trajectory is not None and (shots := trajectory.note()):
        said.append(shots)
    if not said:
        return outcome
    status = "completed_with_issues" if outcome.status == "completed" else outcome.status
    return dataclasses.replace(
        outcome, status=status, notes=joined(outcome.notes, said), result=result
    )


def joined(notes: str, said: list[str]) -> str:
    """The SOP's notes, then ours, as sentences."""
    if notes and not notes.rstrip().endswith((".", "!", "?")):
        notes = notes.rstrip() + "."
    return " ".join([notes, *said]) if notes else " ".join(said)


def json_bytes(value: Any) -> int:
    """The size of ``value`` as JSON text, as Postgres and the webhook body write it."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def _within(result: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """``result`` with its largest values made null until it fits ``max_bytes``: the small ones
    (a status, a flag) are what a client decides on, the large ones what a page blew up. The
    values left out, with their sizes."""
    if json_bytes(result) <= max_bytes:
        return result, []
    sizes = sorted(
        ((key, json_bytes(value)) for key, value in result.items() if value is not None),
        key=lambda item: item[1],
        reverse=True,
    )
    kept, dropped = dict(result), []
    for key, size in sizes:
        kept[key] = None
        dropped.append((key, size))
        if json_bytes(kept) <= max_bytes:
            break
    return kept, dropped
