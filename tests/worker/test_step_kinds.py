"""Step kinds pair up: each step dataclass has a parse, a describe and exactly one handler, and
each handler belongs to a step dataclass. Adding a kind means a dataclass in shared/sop/model.py,
a handler in worker/agent/, and an example below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from shared.sop import model
from shared.sop.loader import load_sop
from shared.sop.model import STEP_KINDS, STEP_TYPES, Step
from worker.agent import interpreter  # noqa: F401  (registers every handler)
from worker.agent.handlers import HANDLERS, handles

# One small valid step per kind, as an SOP author writes it.
EXAMPLES = {
    "login": "login: {}",
    "goto": "goto: /eligibility",
    "fill": "fill: {label: Member ID, value: '{{ member_id }}'}",
    "select": "select: {label: Payer, option: Sandbox Health}",
    "check": "check: {label: Urgent}",
    "click": "click: {button: Search}",
    "upload": "upload: {label: Attachments}",
    "wait_for": "wait_for: {text: Results}",
    "extract": "extract: {into: plan, text: {role: status}}",
    "if": "if: plan\n    then:\n      - screenshot: found",
    "for_each": "for_each: '[1, 2]'\n    as: n\n    do:\n      - click: {button: Next}",
    "while": "while: 'false'\n    do:\n      - click: {button: More}",
    "set": "set: {n: '1 + 1'}",
    "screenshot": "screenshot: results",
    "dismiss_if_present": "dismiss_if_present: {button: Dismiss}",
    "fail": "fail: the portal refused",
    "finish": "finish: true",
    "end_if": "end_if: {text: No member found, status: completed_with_issues, notes: not found}",
    "review": "review: '{{ member_id }} before submitting'",
}


def _document(step: str) -> str:
    return (
        "task_type: check_eligibility\ntitle: One step\nportal: sandbox\n"
        "inputs:\n  - {name: member_id, format: member_id}\n"
        f"steps:\n  - {step}\n"
        "outcomes:\n  - status: completed\n    notes: done\n"
    )


def parity_problems() -> list[str]:
    """Every way the step dataclasses and the handlers fail to pair up."""
    problems = []
    for kind, cls in STEP_TYPES.items():
        if cls not in HANDLERS:
            problems.append(f"step kind {kind!r} ({cls.__name__}) has no handler")
        for method in ("parse", "describe"):
            if method not in cls.__dict__:
                problems.append(f"step kind {kind!r} ({cls.__name__}) has no {method}")
    for cls in HANDLERS:
        if STEP_TYPES.get(getattr(cls, "kind", "")) is not cls:
            problems.append(f"handler for {cls.__name__}, which is not a step kind")
    return problems


def test_every_step_kind_has_one_handler_a_parse_and_a_describe():
    assert parity_problems() == []
    assert len(HANDLERS) == len(STEP_TYPES) == len(STEP_KINDS)


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_the_validator_knows_every_kind_and_describes_it(kind):
    # given an SOP whose one step is of this kind (a new kind needs an example above)
    assert kind in EXAMPLES, f"add an example of {kind!r} to EXAMPLES"
    # when it is loaded
    sop = load_sop(_document(EXAMPLES[kind]))
    # then the step is of the kind's dataclass, and the instructions describe it
    [step] = sop.steps
    assert type(step) is STEP_TYPES[kind] and step.kind == kind
    assert f"1. {step.describe()}" in sop.summary()


def test_examples_name_only_known_kinds():
    assert sorted(EXAMPLES) == sorted(STEP_KINDS)


@pytest.fixture
def restore_registries():
    kinds, handlers = dict(STEP_TYPES), dict(HANDLERS)
    yield
    STEP_TYPES.clear()
    STEP_TYPES.update(kinds)
    HANDLERS.clear()
    HANDLERS.update(handlers)


def test_a_kind_without_a_handler_is_caught(restore_registries):
    # given a new step dataclass with a parse and a describe, but no handler
    @dataclass(frozen=True, kw_only=True)
    class HoverStep(Step):
        kind: ClassVar[str] = "hover"

        @classmethod
        def parse(cls, v: Any, value: Any, path: str, item: dict) -> dict[str, Any]:
            return {}

        def describe(self) -> str:
            return "Hover"

    # then the parity check names it
    assert parity_problems() == ["step kind 'hover' (HoverStep) has no handler"]


def test_a_handler_without_a_kind_is_caught(restore_registries):
    # given a handler registered for a dataclass that is no step kind (no `kind`, no parse)
    @dataclass(frozen=True, kw_only=True)
    class Orphan(model.Step):
        pass

    handles(Orphan)(lambda run, step, at: "done")
    # then the parity check names it
    assert parity_problems() == ["handler for Orphan, which is not a step kind"]
