"""Leaf actions: one handler per step kind that acts on the page (open, fill, click, wait...).

Each returns the message recorded with its step. Sign-in is in ``login``, reading the page in
``extraction``, control flow in ``interpreter``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from shared.redaction import MASK
from shared.sop.model import (
    CheckStep,
    ClickStep,
    DismissIfPresentStep,
    FillStep,
    GotoStep,
    Locator,
    SelectStep,
    UploadStep,
    WaitForStep,
)
from worker.agent import locators
from worker.agent.handlers import At, handles
from worker.agent.page import POLL_S
from worker.agent.values import short
from worker.errors import SecretRefused, StepFailed

if TYPE_CHECKING:
    from worker.agent.interpreter import Run, TaskFile


@handles(GotoStep)
def goto(run: Run, step: GotoStep, at: At) -> str:
    url = run.render(step.url)
    note = run.page.goto(url)
    return f"opened {url}{note}"


@handles(FillStep, redo_when_stale=True)
def fill(run: Run, step: FillStep, at: At) -> str:
    el = run.page.element(step.locator, run.timeout(step))
    where = run.page.locator(step.locator).describe()
    tag, holds_text = run.page.field(el)
    if step.secret:
        if tag == "select":
            raise SecretRefused(f"a sensitive input is only typed, and {where} is a list")
        value = run.sensitive.get(step.secret, "")
        run.page.type_secret(el, value, clear=step.clear, holds_text=holds_text)
        return f"filled {where} with {MASK}"
    value = run.render(step.value)
    if tag == "select":
        run.page.choose(el, value)
    else:
        run.page.type(el, value, clear=step.clear, holds_text=holds_text)
    return f"filled {run.page.locator(step.locator).describe()} with {short(value)}"


@handles(SelectStep, redo_when_stale=True)
def select(run: Run, step: SelectStep, at: At) -> str:
    el = run.page.element(step.locator, run.timeout(step))
    option = run.render(step.option)
    if el.tag_name.lower() == "select":
        run.page.choose(el, option)
    else:  # a custom combobox: open it, then pick the option by its text
        el.click()
        run.page.click(Locator("role", "option", name=option), run.timeout(step))
    return f"chose {short(option)}"


@handles(CheckStep, redo_when_stale=True)
def check(run: Run, step: CheckStep, at: At) -> str:
    el = run.page.element(step.locator, run.timeout(step))
    if el.is_selected() != step.checked:
        run.page.click(step.locator, run.timeout(step))
    return "ticked" if step.checked else "unticked"


@handles(ClickStep, redo_when_stale=True)
def click(run: Run, step: ClickStep, at: At) -> str:
    run.page.click(step.locator, run.timeout(step))
    run.page.check_page()  # it may have navigated: catch an error or sign-in page early
    return f"clicked {run.page.locator(step.locator).describe()}"


@handles(UploadStep, redo_when_stale=True)
def upload(run: Run, step: UploadStep, at: At) -> str:
    chosen = _chosen_files(run, step.files)
    if not chosen:
        if step.required:
            raise StepFailed(f"no task file matches {step.files!r}")
        return "no task files to upload"
    el = run.page.element(step.locator, run.timeout(step))
    if len(chosen) > 1 and not el.get_attribute("multiple"):
        chosen = chosen[:1]  # the control takes one file; the first is the main document
    el.send_keys("\n".join(str(Path(f.path).resolve()) for f in chosen))
    return "uploaded " + ", ".join(f.name for f in chosen)


def _chosen_files(run: Run, spec: str | list[str]) -> list[TaskFile]:
    if spec == "all":
        return list(run.files)
    patterns = [run.render(p) for p in (spec if isinstance(spec, list) else [spec])]
    return [f for f in run.files if any(fnmatch.fnmatch(f.name, p) for p in patterns)]


@handles(WaitForStep, redo_when_stale=True)
def wait_for(run: Run, step: WaitForStep, at: At) -> str:
    matched = run.page.wait_condition(step.condition, run.timeout(step))
    if step.into:
        run.ctx.extracted[step.into] = matched
    return f"saw {run.page.describe(step.condition)}" + (
        f" ({matched})" if "any_of" in step.condition else ""
    )


@handles(DismissIfPresentStep, redo_when_stale=True)
def dismiss_if_present(run: Run, step: DismissIfPresentStep, at: At) -> str:
    loc = run.page.locator(step.locator)
    if step.wait_s:
        try:
            el = WebDriverWait(run.page.driver, step.wait_s, poll_frequency=POLL_S).until(
                lambda _d: locators.find_first(run.page.driver, loc)
            )
        except TimeoutException:
            el = None
    else:
        el = locators.find_first(run.page.driver, loc)
    if el is None:
        return "not shown"
    el.click()
    run.page.wait_gone(loc, run.timeout(step))
    return "dismissed"
