"""Typing into a field: what was there is replaced (unless the step says `clear: false`); only a
field holding text is cleared first, which saves an empty one the round trip."""

from __future__ import annotations

import pytest

from tests.worker.support import page_on_html
from worker.agent.page import Page

FORM = """<!doctype html><html><body>
<input id="empty"><input id="full" value="old text"><textarea id="area">old lines</textarea>
<div id="rich" contenteditable="true">old words</div>
<input id="date" type="date">
</body></html>"""


@pytest.fixture
def page(driver) -> Page:
    return page_on_html(driver, FORM)


def _typed(page: Page, element_id: str, value: str, *, clear: bool = True) -> str:
    el = page.driver.find_element("id", element_id)
    page.type(el, value, clear=clear)
    if el.get_attribute("contenteditable") == "true":
        return el.text
    return el.get_property("value")


@pytest.mark.parametrize("element_id", ["full", "area", "rich"])
def test_what_a_field_held_is_replaced(page, element_id):
    assert _typed(page, element_id, "new") == "new"


def test_clear_false_types_after_what_is_there(page):
    assert _typed(page, "full", " more", clear=False) == "old text more"


def test_an_empty_field_gets_what_is_typed(page):
    assert _typed(page, "empty", "W100000001") == "W100000001"
    assert _typed(page, "date", "01151990") == "1990-01-15"
