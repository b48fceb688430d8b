"""Locators find elements the way a person does (label, button, link, role, text)."""

from __future__ import annotations

import base64

import pytest

from shared.sop.model import Locator
from worker.agent.locators import find_all, find_first

PAGE = """<!doctype html><html><head><title>Locators</title></head><body>
<h1>Claim Form</h1>
<form>
  <label for="a1">Member ID *</label><input id="a1" name="m">
  <label>Notes: <textarea id="n1"></textarea></label>
  <input id="p1" placeholder="Search members">
  <input id="l1" aria-label="Group Number">
  <span id="lbl">Plan Code</span><input id="l2" aria-labelledby="lbl">
  <select id="s1"><option>One</option></select><label for="s1">Plan</label>
  <input id="hidden" type="text" style="display:none" aria-label="Secret Box">
  <label for="f1">Upload</label><input id="f1" type="file" style="display:none">
  <input type="submit" value="Send">
  <div role="button" id="divbtn">Fancy Go</div>
  <button id="b1">Next</button>
</form>
<table id="t1"><caption>Eligibility Result</caption><tr><th>Plan</th><td>Gold</td></tr></table>
<section aria-label="Results"><button id="b2">Next</button><p>Page 2 of 3 <b>total</b></p></section>
<div role="dialog" aria-labelledby="dh"><h2 id="dh">Announcement</h2>
  <button id="d1">Dismiss</button></div>
<div role="alert">No claims found.</div>
<a href="#x" id="k1">Next page</a>
</body></html>"""


@pytest.fixture
def page(driver):
    driver.get("data:text/html;base64," + base64.b64encode(PAGE.encode()).decode())
    return driver


def ids(driver, locator: Locator) -> list[str]:
    return [el.get_attribute("id") or el.tag_name for el in find_all(driver, locator)]


@pytest.mark.parametrize(
    ("locator", "expected"),
    [
        (Locator("label", "Member ID"), ["a1"]),  # trailing "*" ignored
        (Locator("label", "notes"), ["n1"]),  # nested control, colon, case
        (Locator("label", "Search members"), ["p1"]),  # placeholder
        (Locator("label", "Group Number"), ["l1"]),  # aria-label
        (Locator("label", "Plan Code"), ["l2"]),  # aria-labelledby
        (Locator("label", "Plan"), ["s1"]),
        (Locator("label", "Secret Box"), []),  # hidden
        (Locator("label", "Upload"), ["f1"]),  # hidden file inputs still count
        (Locator("button", "Send"), ["input"]),
        (Locator("button", "Fancy Go"), ["divbtn"]),
        (Locator("button", "Next"), ["b1", "b2"]),
        (Locator("button", "Next", nth=2), ["b2"]),
        (Locator("button", "Next", within=Locator("role", "region", name="Results")), ["b2"]),
        (Locator("link", "Next page"), ["k1"]),
        (Locator("role", "table", name="Eligibility Result"), ["t1"]),
        (Locator("role", "heading", name="Claim Form"), ["h1"]),
        (Locator("role", "dialog", name="Announcement"), ["div"]),
        (Locator("button", "Dismiss", within=Locator("role", "dialog")), ["d1"]),
        (Locator("role", "alert"), ["div"]),
        (Locator("role", "textbox", name="Member ID"), ["a1"]),
        (Locator("role", "combobox", name="Plan"), ["s1"]),
        (Locator("role", "link", name="next", match="contains"), ["k1"]),
        (Locator("text", "Page 2 of"), ["p"]),  # innermost element containing the text
        (Locator("text", "No claims found.", match="exact"), ["div"]),
        (Locator("css", "section button"), ["b2"]),
        (Locator("xpath", "//table//td"), ["td"]),
    ],
)
def test_locators(page, locator: Locator, expected: list[str]) -> None:
    assert ids(page, locator) == expected


TEXTS = """<!doctype html><html><body>
<div id="shadow-first"></div>
<table><tr id="row"><td>Jane Doe</td><td>active</td></tr></table>
<p id="br">Line one<br>Line two</p>
<div id="outer"><span id="inner">Paid</span></div>
<p id="x1">Status: paid</p><p id="x2">Paid in full</p>
<p id="gone" style="display:none">Invisible words</p>
<p id="twice">Said twice</p>
<script>var s = "Scripted words";</script>
<script>
  document.getElementById('shadow-first').attachShadow({mode: 'open'}).innerHTML =
    '<p id="shadowed">Shadow words</p><p id="twice-too">Said twice</p>' +
    '<div id="inner-host"></div>';
  document.getElementById('shadow-first').shadowRoot.getElementById('inner-host')
    .attachShadow({mode: 'open'}).innerHTML = '<input id="field" aria-label="Shadow field">';
</script>
</body></html>"""


@pytest.mark.parametrize(
    ("locator", "expected"),
    [
        (Locator("text", "Jane Doe active"), ["row"]),  # across cells: the row
        (Locator("text", "line one line two"), ["br"]),  # across a line break
        (Locator("text", "Paid", match="exact"), ["inner"]),  # the innermost of equal texts
        (Locator("text", "paid"), ["inner", "x1", "x2"]),  # in document order
        (Locator("text", "paid", case="sensitive"), ["x1"]),
        (Locator("text", "Invisible words"), []),  # not shown
        (Locator("text", "Scripted words"), []),  # a script is not text a person reads
        (Locator("text", "Shadow words"), ["shadowed"]),  # in an open shadow root
        (Locator("text", "Said twice"), ["twice", "twice-too"]),  # the page, then its shadows
        (Locator("text", "Said twice", nth=2), ["twice-too"]),
        (Locator("text", "No such words"), []),
        (Locator("css", "p[id^=twice]"), ["twice", "twice-too"]),  # the page, then its shadows
        (Locator("label", "Shadow field"), ["field"]),
    ],
)
def test_text_and_shadow_locators(driver, locator: Locator, expected: list[str]) -> None:
    driver.get("data:text/html;base64," + base64.b64encode(TEXTS.encode()).decode())
    assert ids(driver, locator) == expected


FIRSTS = """<!doctype html><html><body>
<div id="host"></div>
<p id="hidden-paid" style="display:none">Paid</p>
<p id="paid-1">Paid</p><p id="paid-2">Paid</p><p id="paid-3">Paid</p>
<button id="off" disabled>Go</button><button id="on">Go</button>
<label for="up">Upload</label><input id="up" type="file" style="display:none">
<label for="up-2">Upload</label><input id="up-2" type="file" style="display:none">
<section aria-label="Results"><p id="in-results">Paid</p></section>
<script>
  document.getElementById('host').attachShadow({mode: 'open'}).innerHTML =
    '<p id="shadow-hidden" style="display:none">Deep</p><p id="shadow-shown">Deep</p>';
</script>
<p id="light-deep">Deep</p>
<div id="wrap">Both <span id="both-host"></span></div>
<script>
  document.getElementById('both-host').attachShadow({mode: 'open'}).innerHTML =
    '<b id="both-inner">Both</b>';
</script>
</body></html>"""


def load(driver, html: str) -> None:
    driver.get("data:text/html;base64," + base64.b64encode(html.encode()).decode())


@pytest.mark.parametrize(
    ("locator", "enabled", "expected"),
    [
        (Locator("text", "Paid", match="exact"), False, "paid-1"),  # a hidden match comes first
        (Locator("text", "Paid", match="exact", nth=2), False, "paid-2"),
        (Locator("text", "Deep"), False, "light-deep"),  # the page before its shadow roots
        # The page's match has a shadow root's match in it: that one is the innermost
        (Locator("text", "Both"), False, "both-inner"),
        (Locator("css", "p[id^=shadow]"), False, "shadow-shown"),  # the hidden one in the shadow
        (Locator("button", "Go"), False, "off"),
        (Locator("button", "Go"), True, "on"),  # a disabled one comes first
        (Locator("label", "Upload"), False, "up"),  # hidden file inputs: the first
        (
            Locator("text", "Paid", within=Locator("role", "region", name="Results")),
            False,
            "in-results",
        ),
    ],
)
def test_the_first_is_find_alls_first(driver, locator: Locator, enabled: bool, expected: str):
    load(driver, FIRSTS)
    every = find_all(driver, locator, enabled=enabled)
    assert every[0].get_attribute("id") == expected
    assert find_all(driver, locator, enabled=enabled, limit=1) == every[:1]
    if not enabled:
        assert find_first(driver, locator) == every[0]


def test_nothing_to_find_first(driver) -> None:
    load(driver, FIRSTS)
    assert find_first(driver, Locator("text", "No such words")) is None
    assert find_first(driver, Locator("text", "Paid", match="exact", nth=9)) is None


def test_the_first_in_a_frame(driver) -> None:
    inner = '<p id="f-hidden" style="display:none">Framed</p><p id="f-1">Framed</p><p>Framed</p>'
    load(driver, f"<p>Top</p><iframe srcdoc='{inner}'></iframe>")
    every = find_all(driver, Locator("text", "Framed"))
    assert [el.get_attribute("id") for el in every] == ["f-1", ""]
    first = find_first(driver, Locator("text", "Framed"))
    assert first == every[0]  # and the driver is in the frame, where the element can be used
    assert first.text == "Framed"


def test_the_first_only_crosses_webdriver(driver, monkeypatch) -> None:
    """A look for the first match gets one element from the page, not every match (on a page
    whose every row matches, sending them all took seconds a look)."""
    load(driver, "<table>" + "<tr><td>active</td></tr>" * 50 + "</table>")
    sent: list[int] = []
    execute = driver.execute_script

    def counting(script: str, *args: object) -> object:
        answer = execute(script, *args)
        sent.append(len(answer) if isinstance(answer, list) else -1)
        return answer

    monkeypatch.setattr(driver, "execute_script", counting)
    assert len(find_all(driver, Locator("text", "active"))) == 50
    assert find_first(driver, Locator("text", "active")) is not None
    assert sent == [50, 1]
