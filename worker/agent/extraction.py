"""Reading the page: the `extract` step (text, label/value rows, tables, counts...).

What is read is scrubbed of every secret as it leaves the page, and a password field, or a field
a secret was typed into, is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from shared.inputs import snake_key
from shared.sop import patterns
from shared.sop.model import ExtractStep
from worker.agent import locators
from worker.agent.handlers import At, handles
from worker.agent.limits import SLACK_CHARS, Cut, ReadLimits, cut_cells, cut_text
from worker.agent.page import uses_selectors
from worker.agent.values import jsonable, short
from worker.errors import StepFailed

if TYPE_CHECKING:
    from worker.agent.interpreter import Run

# Reads a table's (or a <dl>'s) rows as [[is_header, text], ...]: at most arguments[1] rows
# and about arguments[2] characters of cell text (each cut SLACK_CHARS past what is left; the
# caller cuts exactly once the text is scrubbed), so what a huge table has beyond never crosses
# WebDriver. Also how many rows it has, and whether cell text was left out.
_TABLE_JS = r"""
const [el, maxRows, maxChars, slack] = arguments;
const norm = s => (s || '').replace(/\s+/g, ' ').trim();
let left = maxChars, cut = false;
const read = node => {
  const t = norm(node ? node.innerText : '');
  left -= t.length;
  if (left < 0) cut = true;
  return t.slice(0, Math.max(0, left + t.length) + slack);
};
function rowsOf(items, cellsOf) {
  const rows = [];
  for (let i = 0; i < items.length && i < maxRows; i++) {
    const row = [];
    for (const [head, node] of cellsOf(items[i])) {
      if (left <= 0) { cut = true; break; }
      row.push([head, read(node)]);
    }
    rows.push(row);
    if (left <= 0) { cut = cut || i + 1 < items.length; break; }
  }
  return {rows, total: items.length, cut};
}
const table = el.tagName === 'TABLE' ? el : el.querySelector('table');
if (table) return rowsOf(table.rows, tr => Array.from(tr.cells, c => [c.tagName === 'TH', c]));
const dl = el.tagName === 'DL' ? el : el.querySelector('dl');
if (!dl) return null;
return rowsOf(dl.querySelectorAll('dt'), dt => [[true, dt], [false, dt.nextElementSibling]]);
"""
# A text over arguments[1] characters (a field's value when arguments[3], else the element's
# visible text): [its length, its first characters, SLACK_CHARS more]; null when it is within
# the limit, read then as WebDriver reads text.
_LONG_TEXT_JS = r"""
const [el, max, slack, values] = arguments;
const field = values && /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName);
const t = (field ? el.value : el.innerText) || '';
return t.length <= max ? null : [t.length, t.slice(0, max + slack)];
"""
# The same for an attribute (arguments[3]) as WebDriver reads it (the property of that name when
# it is a text, else the attribute): a page can make one megabytes long.
_LONG_ATTRIBUTE_JS = r"""
const [el, max, slack, name] = arguments;
const prop = el[name];
const t = (typeof prop === 'string' ? prop : el.getAttribute(name)) || '';
return t.length <= max ? null : [t.length, t.slice(0, max + slack)];
"""
# The same for the top page's address (a script can make it megabytes long); null too when the
# top page is not this script's to read.
_LONG_URL_JS = r"""
const [max, slack] = arguments;
let t = '';
try { t = window.top.location.href; } catch (e) { /* another origin's page */ }
return t.length <= max ? null : [t.length, t.slice(0, max + slack)];
"""


@handles(ExtractStep, redo_when_stale=True)
def extract(run: Run, step: ExtractStep, at: At) -> str:
    # Scrubbed as it leaves the page: a secret the portal shows back never reaches a
    # template, where a filter could take it apart. Then cut to the limits, exactly.
    read = _read(run, step, run.timeout(step))
    value, reasons = _keep(step, run.redactor.value(read.value), read, run.limits)
    if isinstance(value, str) and step.pattern:
        m = patterns.search(step.pattern, value)
        if m is None and not step.has_default:
            raise StepFailed(f"{short(value)} does not match {step.pattern!r}")
        value = (m.group(1) if m.groups() else m.group(0)) if m else step.default
    run.ctx.extracted[step.into] = value
    said = f"{step.into} = {short(repr(jsonable(value)), 200)}"
    if not reasons:
        return said
    run.cuts[step.into] = Cut(f"step {at.index} ({run.title(step)})", step.into, reasons)
    return f"{said}; cut: {'; '.join(reasons)}"


@dataclass(frozen=True)
class _Read:
    """What an extract read, before it is scrubbed and cut, and how much the page had: rows
    (a table's, or a <dl>'s terms), characters (a text), or more cell text than was sent."""

    value: Any
    rows: int | None = None
    chars: int | None = None
    more_cells: bool = False


def _keep(
    step: ExtractStep, value: Any, read: _Read, limits: ReadLimits
) -> tuple[Any, tuple[str, ...]]:
    """The scrubbed value within the limits, and what was left out, in words."""
    if read.rows is not None:
        return _keep_rows(step, value, read, limits)
    if isinstance(value, str):
        return keep_text(step.into, value, read.chars, limits.chars)
    return value, ()


def keep_text(into: str, text: str, had: int | None, limit: int) -> tuple[str, tuple[str, ...]]:
    """A scrubbed text (``had`` characters on the page, if it was cut there) within ``limit``
    characters, and what was left out, in words (none if nothing was)."""
    if len(text) <= limit and had is None:
        return text, ()
    kept = cut_text(text, limit)
    return kept, (
        f"the text has {max(had or 0, len(text)):,} characters, and `{into}` holds the first"
        f" {len(kept):,} (MAX_EXTRACT_CHARS)",
    )


def _keep_rows(
    step: ExtractStep, rows: list[list[list[Any]]], read: _Read, limits: ReadLimits
) -> tuple[Any, tuple[str, ...]]:
    """A table's or a <dl>'s rows (read by _TABLE_JS) within the limits, as the step's value."""
    into, reasons = f"`{step.into}`", []
    kept, cells_cut = cut_cells(rows, limits.chars)
    had = read.rows or 0
    if step.what == "table" and _header_at(rows) is not None:
        had -= 1  # the header row is not one of the table's rows
    if had > limits.rows:
        reasons.append(
            f"the table has {had:,} rows, and {into} holds the first {limits.rows:,}"
            " (MAX_EXTRACT_ROWS)"
        )
    if cells_cut or read.more_cells:
        reasons.append(
            f"its cells have more than {limits.chars:,} characters, and {into} holds the"
            " first of them (MAX_EXTRACT_CHARS)"
        )
    value = pairs(kept[: limits.rows]) if step.what == "pairs" else table(kept)[: limits.rows]
    return value, tuple(reasons)


def _read(run: Run, step: ExtractStep, timeout: float) -> _Read:
    page, what, limits = run.page, step.what, run.limits
    if what == "url" or step.locator is None:
        long = page.driver.execute_script(_LONG_URL_JS, limits.chars, SLACK_CHARS)
        return _long_read(long) or _Read(page.driver.current_url)
    loc = page.locator(step.locator)
    if what in ("exists", "count"):
        # An exists needs one match, unless its locator could test a field's secret: then every
        # match is checked (refuse_secret_probe). A count needs them all.
        limit = 1 if what == "exists" and not uses_selectors(loc) else None
        found = locators.find_all(page.driver, loc, limit=limit)
        if not found and step.wait_s:
            # Asked to wait: for a first match, up to wait_s; none by then is an answer too.
            try:
                found = page.wait(
                    lambda: locators.find_all(page.driver, loc, limit=limit), step.wait_s, ""
                )
            except StepFailed:
                found = []
        page.refuse_secret_probe(found, loc)
        return _Read(bool(found) if what == "exists" else len(found))
    if step.has_default:
        el = locators.find_first(page.driver, loc)
        if el is None:
            return _Read(step.default)
    else:
        el = page.element(step.locator, timeout, enabled=False)
    page.refuse_secret_read(el, loc)
    if what == "attribute":
        name = step.attribute or ""
        long = page.driver.execute_script(_LONG_ATTRIBUTE_JS, el, limits.chars, SLACK_CHARS, name)
        return _long_read(long) or _Read(el.get_attribute(name))
    if what == "text":
        text, had = read_text(page.driver, el, limits.chars, values=True)
        return _Read(text, chars=had)
    # A row more than the limit: a header row is not one of the rows kept.
    got = page.driver.execute_script(_TABLE_JS, el, limits.rows + 1, limits.chars, SLACK_CHARS)
    if got is None:
        raise StepFailed(f"{loc.describe()} is not a table", looking_for=loc.describe())
    return _Read(got["rows"], rows=int(got["total"]), more_cells=bool(got["cut"]))


def _long_read(long: Any) -> _Read | None:
    """What a _LONG_*_JS script sent of a text over the limit, with how many characters the
    page had (the caller cuts it once it is scrubbed); None when the text was within it."""
    return None if long is None else _Read(str(long[1]), chars=int(long[0]))


def read_text(
    driver: WebDriver, el: WebElement, limit: int, *, values: bool
) -> tuple[str, int | None]:
    """An element's visible text (a field's value, with ``values``), and, if it is over
    ``limit`` characters, only its first ones (and SLACK_CHARS more, for the caller to cut once
    it is scrubbed) with how many it has: the rest never crosses WebDriver."""
    long = driver.execute_script(_LONG_TEXT_JS, el, limit, SLACK_CHARS, values)
    if long is not None:
        return str(long[1]).strip(), int(long[0])
    is_control = values and el.tag_name.lower() in ("input", "textarea", "select")
    return ((el.get_attribute("value") if is_control else el.text) or "").strip(), None


def pairs(rows: list[list[list[Any]]]) -> dict[str, str]:
    """Label/value rows (`<th>Plan</th><td>Gold</td>`) -> {"plan": "Gold"}."""
    return {snake_key(r[0][1]): r[1][1] for r in rows if len(r) >= 2 and r[0][1]}


def _header_at(rows: list[list[list[Any]]]) -> int | None:
    """The index of the table's header row (its cells all <th>), if it has one."""
    return next((i for i, r in enumerate(rows) if r and all(c[0] for c in r)), None)


def table(rows: list[list[list[Any]]]) -> list[dict[str, str]]:
    """A table with a header row -> one dict per body row, keyed by snake_case header."""
    header_at = _header_at(rows)
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
