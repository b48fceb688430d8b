"""A click that sends a form: the next step acts on the page the form brought, never on the
page being left (Chromium sends the form a moment after the click)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.sop.model import Locator
from tests.worker.support import bare_page

pytestmark = pytest.mark.browser

ROUNDS = 20
FORM = """<!doctype html><html><head><title>Notes</title></head><body><h1>{heading}</h1>
<form method="post" action="/save"><label for="n">Note</label><input id="n" name="note" value="x">
<button type="submit">Save</button></form>
<form method="post" action="/save" id="scripted"><button type="submit">Save here</button></form>
<script>document.getElementById('scripted').addEventListener('submit', e => {{
  e.preventDefault(); document.querySelector('h1').textContent = 'Saved in place'; }});</script>
<a href="/other">Other page</a></body></html>"""


class Portal:
    """A two-page portal: a form that posts and redirects back, and a page a link opens."""

    def __init__(self) -> None:
        self.saves = 0
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/other":
                    self._page("<!doctype html><html><body><h1>Other</h1></body></html>")
                else:
                    heading = "Saved" if self.path == "/?saved" else "Notes"
                    self._page(FORM.format(heading=heading))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                portal.saves += 1
                self.send_response(303)
                self.send_header("Location", "/?saved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _page(self, html: str) -> None:
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def notes() -> Iterator[Portal]:
    portal = Portal()
    threading.Thread(target=portal.server.serve_forever, daemon=True).start()
    yield portal
    portal.server.shutdown()
    portal.server.server_close()


def heading(driver) -> str:
    return driver.find_element("tag name", "h1").text


def test_the_step_after_a_submit_click_sees_the_page_the_form_brought(driver, notes) -> None:
    page = bare_page(driver, notes.url)
    seen = []
    for _ in range(ROUNDS):
        driver.get(notes.url)
        page.click(Locator("button", "Save"), 10)
        seen.append(heading(driver))
    assert seen == ["Saved"] * ROUNDS


def test_a_link_clicked_right_after_a_submit_click_never_cancels_the_form(driver, notes) -> None:
    page = bare_page(driver, notes.url)
    for _ in range(ROUNDS):
        driver.get(notes.url)
        page.click(Locator("button", "Save"), 10)
        page.click(Locator("link", "Other page"), 10)
    assert notes.saves == ROUNDS
    assert heading(driver) == "Other"


def test_a_form_the_page_handles_itself_leaves_the_page_in_place(driver, notes) -> None:
    page = bare_page(driver, notes.url)
    driver.get(notes.url)
    page.click(Locator("button", "Save here"), 10)
    assert heading(driver) == "Saved in place"
    assert notes.saves == 0
