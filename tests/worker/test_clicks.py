"""A click that sends a form (a submit button's, or the page's script's while the click runs):
the next step acts on the page the form brought, never on the page being left (Chromium sends
the form a moment after the click)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.sop.model import Locator
from tests.worker.support import QuietHandler, bare_page, loopback_server

pytestmark = pytest.mark.browser

ROUNDS = 20
FORM = """<!doctype html><html><head><title>Notes</title></head><body><h1>{heading}</h1>
<form method="post" action="/save"><label for="n">Note</label><input id="n" name="note" value="x">
<button type="submit">Save</button></form>
<button type="button" onclick="document.forms[0].submit()">Save by script</button>
<button type="button" onclick="document.forms[0].requestSubmit()">Save by request</button>
<form method="post" action="/save" id="checked"><button type="submit">Save if valid</button></form>
<script>document.getElementById('checked').addEventListener('submit', e => {{
  e.preventDefault(); e.target.submit(); }});</script>
<form method="post" action="/save" id="scripted"><button type="submit">Save here</button></form>
<script>document.getElementById('scripted').addEventListener('submit', e => {{
  e.preventDefault(); document.querySelector('h1').textContent = 'Saved in place'; }});</script>
<a href="/other">Other page</a></body></html>"""


class Portal:
    """A two-page portal: a form that posts and redirects back, and a page a link opens."""

    def __init__(self) -> None:
        self.saves = 0
        self.url = ""


@pytest.fixture
def notes() -> Iterator[Portal]:
    portal = Portal()

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/other":
                html = "<!doctype html><html><body><h1>Other</h1></body></html>"
            else:
                html = FORM.format(heading="Saved" if self.path == "/?saved" else "Notes")
            self.reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            portal.saves += 1
            self.reply(303, headers={"Location": "/?saved"})

    with loopback_server(Handler) as url:
        portal.url = url
        yield portal


def heading(driver) -> str:
    return driver.find_element("tag name", "h1").text


# A submit button; buttons whose script sends the form (submit(): no submit event;
# requestSubmit(): one); a submit button whose form's script stops the event, checks, then
# sends the form itself.
SENDS_THE_FORM = ["Save", "Save by script", "Save by request", "Save if valid"]


@pytest.mark.parametrize("button", SENDS_THE_FORM)
def test_the_step_after_a_submit_click_sees_the_page_the_form_brought(
    driver, notes, button
) -> None:
    page = bare_page(driver, notes.url)
    seen = []
    for _ in range(ROUNDS):
        driver.get(notes.url)
        page.click(Locator("button", button), 10)
        seen.append(heading(driver))
    assert seen == ["Saved"] * ROUNDS


@pytest.mark.parametrize("button", SENDS_THE_FORM)
def test_a_link_clicked_right_after_a_submit_click_never_cancels_the_form(
    driver, notes, button
) -> None:
    page = bare_page(driver, notes.url)
    for _ in range(ROUNDS):
        driver.get(notes.url)
        page.click(Locator("button", button), 10)
        page.click(Locator("link", "Other page"), 10)
    assert notes.saves == ROUNDS
    assert heading(driver) == "Other"


def test_a_form_the_page_handles_itself_leaves_the_page_in_place(driver, notes) -> None:
    page = bare_page(driver, notes.url)
    driver.get(notes.url)
    page.click(Locator("button", "Save here"), 10)
    assert heading(driver) == "Saved in place"
    assert notes.saves == 0
