"""Reading the page: the `extract` step (text, label/value rows, tables, counts...).

What is read is scrubbed of every secret as it leaves the page, and a password field, or a field
a secret was typed into, is never read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.inputs import snake_key
from shared.sop import patterns
from shared.sop.model import ExtractStep
from worker.agent import locators
from worker.agent.handlers import At, handles
from worker.agent.values import jsonable, short
from worker.errors import StepFailed

if TYPE_CHECKING:
    from worker.agent.interpreter import Run

_TABLE_JS = r"""
const el = arguments[0];
const norm = s => (s || '').replace(/\s+/g, ' ').trim();
const table = el.tagName === 'TABLE' ? el : el.querySelector('table');
if (table) return Array.from(table.rows).map(tr => Array.from(tr.cells).map(c =>
  [c.tagName === 'TH', norm(c.innerText)]));
const dl = el.tagName === 'DL' ? el : el.querySelector('dl');
if (!dl) return null;
return Array.from(dl.querySelectorAll('dt')).map(dt => {
  const dd = dt.nextElementSibling;
  return [[true, norm(dt.innerText)], [false, norm(dd ? dd.innerText : '')]];
});
"""


@handles(ExtractStep, redo_when_stale=True)
def extract(run: Run, step: ExtractStep, at: At) -> str:
    # Scrubbed as it leaves the page: a secret the portal shows back never reaches a
    # template, where a filter could take it apart.
    value = run.redactor.value(_read(run, step, run.timeout(step)))
    if isinstance(value, str) and step.pattern:
        m = patterns.search(step.pattern, value)
        if m is None and not step.has_default:
            raise StepFailed(f"{short(value)} does not match {step.pattern!r}")
        value = (m.group(1) if m.groups() else m.group(0)) if m else step.default
    run.ctx.extracted[step.into] = value
    return f"{step.into} = {short(repr(jsonable(value)), 200)}"


def _read(run: Run, step: ExtractStep, timeout: float) -> Any:
    page, what = run.page, step.what
    if what == "url" or step.locator is None:
        return page.driver.current_url
    loc = page.locator(step.locator)
    if what in ("exists", "count"):
        found = locators.find_all(page.driver, loc)
        if not found and step.wait_s:
            # Asked to wait: for a first match, up to wait_s; none by then is an answer too.
            try:
                found = page.wait(lambda: locators.find_all(page.driver, loc), step.wait_s, "")
            except StepFailed:
                found = []
        page.refuse_secret_probe(found, loc)
        return bool(found) if what == "exists" else len(found)
    if step.has_default:
        el = locators.find_first(page.driver, loc)
        if el is None:
            return step.default
    else:
        el = page.element(step.locator, timeout, enabled=False)
    page.refuse_secret_read(el, loc)
    if what == "attribute":
        return el.get_attribute(step.attribute or "")
    if what == "text":
        tag = el.tag_name.lower()
        is_control = tag in ("input", "textarea", "select")
        return ((el.get_attribute("value") if is_control else el.text) or "").strip()
    rows = page.driver.execute_script(_TABLE_JS, el)
    if rows is None:
        raise StepFailed(f"{loc.describe()} is not a table", looking_for=loc.describe())
    return pairs(rows) if what == "pairs" else table(rows)


def pairs(rows: list[list[list[Any]]]) -> dict[str, str]:
    """Label/value rows (`<th>Plan</th><td>Gold</td>`) -> {"plan": "Gold"}."""
    return {snake_key(r[0][1]): r[1][1] for r in rows if len(r) >= 2 and r[0][1]}


def table(rows: list[list[list[Any]]]) -> list[dict[str, str]]:
    """A table with a header row -> one dict per body row, keyed by snake_case header."""
    header_at = next((i for i, r in enumerate(rows) if r and all(c[0] for c in r)), None)
    if header_at is None:
        width = max((len(r) for r in rows), default=0)
        keys, body = [f"col_{i}" for i in range(1, width + 1)], rows
    else:
        keys, body = (
            [snake_key(c[1]) or f"col_{i}" for i, c in enumerate(rows[header_at], 1)],
            rows[header_at + 1 :],
        )
    out = []
    for r in body:
        cells = [c[1] for c in r]
        if cells:
            out.append(dict(zip(keys, cells + [""] * (len(keys) - len(cells)), strict=False)))
    return out
