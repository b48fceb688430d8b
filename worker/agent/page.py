"""The page the agent works on: navigation, waits, checks, overlays, typing, and the rules that
keep secrets from being read back.

Every wait looks for error pages and an expired session between polls; every navigation checks
that the browser is still on the portal's origins.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    JavascriptException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from shared.sop import patterns
from shared.sop.model import (
    VALUE_TEST_REFUSED,
    Locator,
    PortalErrorPattern,
    describe_condition,
    selector_tests_value,
)
from shared.sop.profile import PageRule, SignIn
from worker.agent import locators
from worker.agent.limits import ReadLimits
from worker.egress import Boundary
from worker.errors import PortalUnavailable, SecretRefused, StepFailed

# How often a wait looks again. Each look is one or two WebDriver round trips of a few ms; a
# finer poll notices a page or a spinner's end sooner, which is most of a warm task's waiting.
POLL_S = 0.05
# How many times a goto opens its page when a navigation the page started comes first.
_GOTO_TRIES = 3

# The network error Chromium names when it could not load a page (net::ERR_CONNECTION_REFUSED):
# quoted in the note, so that whoever reads it knows a refused connection from a bad certificate.
_NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")


_INTERCEPTED = (ElementClickInterceptedException, ElementNotInteractableException)

# Chromium sends a form a moment after the click that submits it, and WebDriver's click can
# return before: the next step would then act on the page being left (a link clicked there
# cancels the form). From before a click to just after it, listeners note a form sent into
# this frame: by a submit control or the page's own script while the click runs (`submit()`,
# `requestSubmit()`). After the click, a form sent and not taken over by the page's script
# means the next page is on its way, and the click waits for it (up to this long: a form
# answered by a download or a 204 leaves the page where it is). A form a script sends later (a
# timer) is not waited for.
_SUBMIT_SETTLE_S = 2.0
_WATCH_SUBMIT_JS = r"""
window.__understudySubmit = null;  // watched until the check after the click deletes it
if (!Object.hasOwn(window, '__understudyWatch')) {  // once a document
  Object.defineProperty(window, '__understudyWatch', {value: true});
  const watched = (form, submitter) => {
    if (window.__understudySubmit === undefined) return false;
    const target = ((submitter && submitter.getAttribute('formtarget'))
      ?? form.getAttribute('target') ?? '').trim().toLowerCase();
    return target === '' || target === '_self';  // into this frame
  };
  // A submit control, or the page's script through requestSubmit(): the event, which the
  // page's own script may stop.
  window.addEventListener('submit', e => {
    if (watched(e.target, e.submitter)) window.__understudySubmit = e;
  }, true);
  // The page's script through submit(), which sends no event (also after it stopped the
  // event to check the form first).
  const proto = HTMLFormElement.prototype;
  const send = proto.submit;
  proto.submit = function () {
    if (watched(this, null)) window.__understudySubmit = {defaultPrevented: false};
    return send.call(this);
  };
}
return document.documentElement;
"""
# After the click: whether a form was sent that the page's script did not stop.
_SUBMIT_SENT_JS = r"""
const e = window.__understudySubmit;
delete window.__understudySubmit;
return Boolean(e && !e.defaultPrevented);
"""

# Whether a field holds text to clear before typing (anything it cannot tell: yes).
_HOLDS_TEXT_FN_JS = """
const holdsText = e => (e.isContentEditable ? e.textContent !== ''
  : typeof e.value === 'string' ? e.value !== '' : true);
"""
_HOLDS_TEXT_JS = _HOLDS_TEXT_FN_JS + "return holdsText(arguments[0]);"
# A field's tag name and whether it holds text: what a fill needs to know before it types.
_FIELD_JS = (
    _HOLDS_TEXT_FN_JS + "return [arguments[0].tagName.toLowerCase(), holdsText(arguments[0])];"
)
# Chooses an <option> of a <select> as a person's pick does (the select focused, the option
# selected, `input` and `change` sent), in one round trip: the first whose text is the wanted
# one (case-insensitive, spaces collapsed), else the first whose value is. Returns {chosen: text},
# or why none was: {missing: [texts]}, {hidden: text}, {disabled: text}.
_CHOOSE_JS = r"""
const [select, want] = arguments;
const squash = s => (s || '').replace(/\s+/g, ' ').trim();
const options = Array.from(select.options);
const wanted = squash(want).toLowerCase();
const opt = options.find(o => squash(o.text).toLowerCase() === wanted)
  || options.find(o => o.value === want);
if (!opt) return {missing: options.map(o => squash(o.text))};
const st = getComputedStyle(opt);
if (st.visibility === 'hidden' || st.display === 'none' || st.opacity === '0')
  return {hidden: squash(opt.text)};
const group = opt.parentElement;
if (opt.disabled || (group && group.tagName === 'OPTGROUP' && group.disabled))
  return {disabled: squash(opt.text)};
if (!opt.selected) {
  select.focus();
  opt.selected = true;
  select.dispatchEvent(new Event('input', {bubbles: true}));
  select.dispatchEvent(new Event('change', {bubbles: true}));
}
return {chosen: squash(opt.text)};
"""
# Marks a field a secret is typed into: the agent refuses to read it, and Chromium draws its
# characters as discs, so no screenshot shows it either.
_MARK_TYPED_JS = r"""
arguments[0].setAttribute('data-understudy-secret', '');
arguments[0].style.setProperty('-webkit-text-security', 'disc', 'important');
"""

# Per element: "password" for a password field (only a non-empty one if arguments[1]), "typed"
# for a field a secret was typed into, else null.
_FIELD_KIND_JS = r"""
const [els, filledOnly] = arguments;
return els.map(el => {
  if (el.tagName === 'INPUT' && (el.type || '').toLowerCase() === 'password'
      && (!filledOnly || el.value !== '')) return 'password';
  return el.hasAttribute('data-understudy-secret') ? 'typed' : null;
});
"""


class SessionExpired(Exception):
    """The sign-in page (or another sign of an ended session) appeared in the middle of the
    steps."""


@dataclass(frozen=True)
class SessionSigns:
    """How a page shows that the session ended (docs/portals.md): the sign-in page, told by
    ``sign_in.page`` (an empty rule is the old sign: the sign-in form's fields all showing), or
    one of the profile's ``expired`` conditions. No sign-in: no sign-in page to see."""

    sign_in: SignIn | None
    expired: tuple[dict[str, Any], ...] = ()


def sign_in_page_locators(sign_in: SignIn) -> list[Locator]:
    """What to look for to tell the sign-in page: the rule's `shows`, or (no rule) the form."""
    if sign_in.page.url is None and sign_in.page.shows is None:
        # (a sign-in without a password shows its username field in its place)
        return [sign_in.username, sign_in.password or sign_in.username, sign_in.button]
    return [sign_in.page.shows] if sign_in.page.shows else []


def code_page_rule(sign_in: SignIn) -> PageRule | None:
    """How to tell the one-time code page: its rule, or the code field showing."""
    if sign_in.code is None:
        return None
    return sign_in.code_page or PageRule(shows=sign_in.code)


def on_page(rule: PageRule, url: str, found: Sequence[bool], *, signing_in: bool = False) -> bool:
    """Whether the page is the one ``rule`` describes, given its address and whether each of
    its locators (``sign_in_page_locators``, or the rule's `shows`) showed. An empty rule is the
    old sign: every field of the sign-in form showing; while signing in (``signing_in``), the
    username or the password field showing, as before profiles."""
    if rule.url is None and rule.shows is None:
        return any(found[:2]) if signing_in else bool(found) and all(found)
    if rule.url is not None and patterns.search(rule.url, url) is None:
        return False
    return all(found)


def is_stale(exc: WebDriverException) -> bool:
    """Whether the element belonged to a document that has since been replaced."""
    if isinstance(exc, StaleElementReferenceException):
        return True
    text = (exc.msg or "").lower()
    return "does not belong to the document" in text or "stale element" in text


def between_documents(exc: WebDriverException) -> bool:
    """Whether a script failed because its document was being replaced (a page that reloads
    itself, a navigation under way): the next look finds the next document."""
    if isinstance(exc, JavascriptException):
        return True
    # chromedriver's answer when a navigation began while it ran the script
    return "aborted by navigation" in (exc.msg or "")


def replaced(page: WebElement) -> bool:
    """Whether ``page`` (a document's ``html`` element) has been replaced by the next page."""
    try:
        page.is_enabled()
    except WebDriverException as exc:
        if is_stale(exc):
            return True
        raise
    return False


class Page:
    """The browser's current page, as the steps see it."""

    def __init__(
        self,
        *,
        driver: WebDriver,
        boundary: Boundary,
        base_url: str,
        portal_errors: Sequence[PortalErrorPattern],
        dismiss: Sequence[Locator],
        session: SessionSigns,
        render: Callable[[str], str],
        text_chars: int = ReadLimits.chars,
    ) -> None:
        self.driver = driver
        self.boundary = boundary
        self.base_url = base_url.rstrip("/")
        self.portal_errors = tuple(portal_errors)
        self.dismiss = tuple(dismiss)
        # Seen in the middle of the steps, these mean the session ended.
        self.session = session
        self.need_text = any(p.where == "text" for p in self.portal_errors)
        # What error patterns `where: text` read of a page (MAX_EXTRACT_CHARS), and the last
        # read: (its id, its text), kept while the page does not change.
        self.text_chars = text_chars
        self._text = ("", "")
        # Fills in the templates of a locator or a message with the run's variables.
        self.render = render
        self.in_login = False
        # WebDriver ids of the fields a secret was typed into: never read back.
        self.secret_fields: set[str] = set()

    # -- navigation and checks --

    def goto(self, url: str) -> str:
        """Open ``url``. A navigation the page had started just before (a form that a click
        sent a moment late) can take the browser elsewhere while ours loads; that navigation
        is let finish and ``url`` opened again. Returns a note for the step when it happened."""
        full = self.boundary.target(url, self.base_url)  # only http(s) on the portal's origins
        note, tries = "", 1
        while True:
            left = self._address().split("#")[0]  # a referrer never holds the fragment
            self._load(full, url)
            self.check_boundary()
            info, markers = self._probe()
            # Our own navigation sends no referrer; one the page we were on started sends that
            # page's address (a page we open that moves on by script sends its own).
            came_from = info.get("referrer", "") if info is not None else ""
            if tries == _GOTO_TRIES or not left or left == full or came_from != left:
                self._judge(info, markers)
                return note
            tries += 1
            landed = info.get("url", "") if info is not None else ""
            note = f" (the page's own navigation to {landed} came first)"

    def _address(self) -> str:
        try:
            return self.driver.current_url
        except WebDriverException:
            return ""

    def _load(self, full: str, url: str) -> None:
        try:
            self.driver.get(full)
        except TimeoutException:
            self.check_boundary()
            raise PortalUnavailable(f"the page {url} did not load in time") from None
        except WebDriverException as exc:
            self.check_boundary()
            code = _NET_ERROR.search(exc.msg or "")
            if code is None:
                raise
            raise _unreachable(code[1], url) from None

    def check_boundary(self) -> None:
        try:
            url: str | None = self.driver.current_url
        except WebDriverException:
            url = None
        self.boundary.check(url)

    def check_page(self) -> None:
        """Raise if the page is an error page (a 5xx answer always is one), or shows that the
        session ended (the sign-in page, or a sign the profile names) in the middle of the
        steps."""
        self._judge(*self._probe())

    def _probe(self) -> tuple[dict[str, Any] | None, list[tuple[str, Locator]]]:
        """What :meth:`check_page` looks at, in one round trip (None between documents), and
        the session markers it looked for."""
        markers = self._markers()
        try:
            info = locators.probe_page(
                self.driver, text=self._text_wanted(), markers=[m for _kind, m in markers]
            )
        except WebDriverException as exc:
            if not between_documents(exc):
                raise
            return None, markers
        return info, markers

    def _judge(self, info: dict[str, Any] | None, markers: list[tuple[str, Locator]]) -> None:
        if info is None:
            return  # page is between documents; the next poll looks again
        url = info.get("url", "")
        if url.startswith("chrome-error://"):
            # The address the browser failed to load, without its query (it may hold data)
            raise _unreachable(info.get("error", ""), urlsplit(self._address()).path or "/")
        shown = info.get("headings", "").split("\n")[0] or info.get("title", "")
        status = int(info.get("status") or 0)
        if status >= 500:  # whatever the page says: the portal is failing, not the task
            raise PortalUnavailable(
                f"the portal answered HTTP {status}" + (f": {shown}" if shown else "")
            )
        text = self._page_text(info) if self.need_text else ""
        for pattern in self.portal_errors:
            where = {"title": info.get("title", ""), "text": text}.get(
                pattern.where, f"{info.get('title', '')}\n{info.get('headings', '')}"
            )
            if pattern.matches(where):
                raise PortalUnavailable(f"the portal shows an error page: {shown}")
        if markers and self._session_ended(url, markers, info.get("markers") or []):
            raise SessionExpired()

    def _text_wanted(self) -> locators.PageText | None:
        """What a probe asks of the page's text: nothing, unless an error pattern reads it."""
        return (self._text[0], self.text_chars) if self.need_text else None

    def _page_text(self, info: dict[str, Any]) -> str:
        """The page's text a probe read, or the earlier read it said still stands."""
        if info.get("text") is not None:
            self._text = (info.get("text_id", ""), info["text"])
        return self._text[1] if info.get("text_id") == self._text[0] else ""

    def _markers(self) -> list[tuple[str, Locator]]:
        """The session markers a page check looks for (none while signing in)."""
        return [] if self.in_login else self._session_markers()

    def _session_markers(self) -> list[tuple[str, Locator]]:
        """The locators to look for on every page, each tagged "page" (the sign-in page's: all
        must show) or "sign" (the profile's other signs: any one will do)."""
        out: list[tuple[str, Locator]] = []
        if self.session.sign_in is not None:
            page = sign_in_page_locators(self.session.sign_in)
            out += [("page", self.locator(loc)) for loc in page]
        for cond in self.session.expired:
            if "visible" in cond:
                out.append(("sign", self.locator(cond["visible"])))
            elif "text" in cond:
                out.append(("sign", Locator("text", self.render(cond["text"]))))
        return out

    def _session_ended(self, url: str, markers: list[tuple[str, Locator]], found: list[bool]):
        tagged = list(zip((kind for kind, _ in markers), found, strict=False))
        if any(kind == "sign" and hit for kind, hit in tagged):
            return True
        for cond in self.session.expired:
            if "url_contains" in cond and self.render(cond["url_contains"]) in url:
                return True
        if self.session.sign_in is None:
            return False
        page = [hit for kind, hit in tagged if kind == "page"]
        return on_page(self.session.sign_in.page, url, page)

    def png(self) -> bytes | None:
        try:
            return self.driver.get_screenshot_as_png()
        except WebDriverException:
            return None

    # -- waiting --

    def wait(
        self, probe: Callable[[], Any], timeout: float, what: str, *, checks_page: bool = False
    ) -> Any:
        """Poll `probe` until truthy, checking for error pages and expiry in between (the
        probe's own job when it ``checks_page``)."""

        def condition(_driver: WebDriver) -> Any:
            try:
                found = probe()
            except WebDriverException as exc:
                # The document was replaced mid-script, or the element belonged to the previous
                # page: look again.
                if between_documents(exc) or is_stale(exc):
                    return False
                raise
            # Checked even on success: an alert on the sign-in page is not the answer awaited.
            if not checks_page:
                self.check_page()
            return found or False

        waiter = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=POLL_S,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        )
        try:
            return waiter.until(condition)
        except TimeoutException:
            self.check_page()
            raise StepFailed(
                f"could not find {what} within {timeout:g} s", looking_for=what
            ) from None

    def locator(self, locator: Locator) -> Locator:
        """The locator with its templates filled in."""
        value = self.render(locator.value)
        if value != locator.value and selector_tests_value(locator.kind, value):
            raise SecretRefused(VALUE_TEST_REFUSED)  # built by a template, so seen only now
        return replace(
            locator,
            value=value,
            name=self.render(locator.name) if locator.name else None,
            within=self.locator(locator.within) if locator.within else None,
        )

    def element(self, locator: Locator, timeout: float, *, enabled: bool = True) -> WebElement:
        """Wait for the first visible (and enabled) element the locator matches."""
        loc = self.locator(locator)

        def probe() -> WebElement | None:
            # The look-up and the page's check in one round trip.
            markers = self._markers()
            found, info = locators.find_all_and_probe(
                self.driver,
                loc,
                enabled=enabled,
                limit=1,
                text=self._text_wanted(),
                markers=[m for _kind, m in markers],
            )
            self._judge(info, markers)
            return found[0] if found else None

        return self.wait(probe, timeout, loc.describe(), checks_page=True)

    def condition_met(self, cond: Mapping[str, Any]) -> str | bool:
        """One look at a wait_for condition; the matched branch's name, or False."""
        if "any_of" in cond:
            branches = list(enumerate(cond["any_of"], start=1))
            for i, sub in branches:
                if self.condition_met(sub):
                    # Each branch is its own look: a page that changed between the looks (the
                    # next page arrived, a script filled the results in) can show an earlier
                    # branch now too, and the earliest that holds is the one named.
                    for j, earlier in branches[: i - 1]:
                        if self.condition_met(earlier):
                            return earlier.get("as") or str(j)
                    return sub.get("as") or str(i)
            return False
        return (cond.get("as") or "1") if self._holds(cond) else False

    def _holds(self, cond: Mapping[str, Any]) -> bool:
        if "visible" in cond:
            return self.shown(cond["visible"])
        if "gone" in cond:
            return not self.shown(cond["gone"])
        if "text" in cond:
            return self.shown(Locator("text", cond["text"], case=cond.get("case")))
        return self.render(cond["url_contains"]) in self.driver.current_url

    def shown(self, locator: Locator) -> bool:
        loc = self.locator(locator)
        found = locators.find_first(self.driver, loc)
        if found is not None:
            self.refuse_secret_probe([found], loc)
        return found is not None

    def wait_condition(self, cond: Mapping[str, Any], timeout: float) -> str:
        return self.wait(lambda: self.condition_met(cond), timeout, self.describe(cond))

    def describe(self, cond: Mapping[str, Any]) -> str:
        """A wait condition in words, its templates filled in where they can be."""
        try:
            return self.render(describe_condition(cond))
        except StepFailed:  # a template that cannot be written (the wait itself says so)
            return describe_condition(cond)

    def wait_gone(self, loc: Locator, timeout: float) -> None:
        def gone() -> bool:
            return locators.find_first(self.driver, loc) is None

        self.wait(gone, timeout, f"{loc.describe()} to go away")

    # -- interaction --

    def click(self, locator: Locator, timeout: float) -> None:
        """Click, dismissing a covering overlay and retrying once if the click is intercepted."""
        retried = False
        for _ in range(3):
            el = self.element(locator, timeout)
            if retried:  # WebDriver scrolls by itself; after an overlay, centre it to be sure
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            try:
                leaving = self.driver.execute_script(_WATCH_SUBMIT_JS, el)
                el.click()
            except _INTERCEPTED:
                if retried:
                    raise StepFailed(
                        f"{locator.describe()} is covered by another element",
                        looking_for=locator.describe(),
                    ) from None
                self.dismiss_overlays()
                retried = True
            except TimeoutException:
                # The page the click opened did not load within the page load timeout (the
                # browser stops loading it, and answers as before).
                self.check_boundary()
                raise PortalUnavailable(
                    f"the page that clicking {locator.describe()} opened did not load in time"
                ) from None
            except WebDriverException as exc:
                if not is_stale(exc):
                    raise
                # re-rendered or replaced under us: find it again
            else:
                self._await_submission(leaving, min(timeout, _SUBMIT_SETTLE_S))
                return
        raise StepFailed(f"could not click {locator.describe()}", looking_for=locator.describe())

    def _await_submission(self, page: WebElement, timeout: float) -> None:
        """Wait for ``page`` (the document clicked on) to be replaced, if the click sent a form
        (see ``_WATCH_SUBMIT_JS``); not there by ``timeout``: the form left the page as it was."""
        try:
            if not self.driver.execute_script(_SUBMIT_SENT_JS):
                return
        except WebDriverException:  # the document is going away: the next page is on its way
            return

        # (any other error while waiting is the next step's to meet)
        with contextlib.suppress(TimeoutException, WebDriverException):
            WebDriverWait(self.driver, timeout, poll_frequency=POLL_S).until(
                lambda _driver: replaced(page)
            )

    def dismiss_overlays(self) -> list[str]:
        """Click whatever `dismiss` locator is showing (announcement modals); what it closed."""
        dismissed: list[str] = []
        for locator in self.dismiss:
            loc = self.locator(locator)
            el = locators.find_first(self.driver, loc)
            if el is None:
                continue
            try:
                el.click()
            except WebDriverException:
                continue
            dismissed.append(loc.describe())
            self.wait_gone(loc, 5)
        return dismissed

    def submit_and_wait(self, button: Locator, timeout: float) -> None:
        """Click a form's button and wait for the next page (or an inline message)."""
        locators.to_top_page(self.driver)
        page = self.driver.find_element("tag name", "html")
        before, address = self.alert_text(), self.driver.current_url
        self.click(button, timeout)

        def moved() -> bool:
            if replaced(page):
                return True
            # A single-page app changes its address without a new document.
            if self.driver.current_url != address:
                return True
            return self.alert_text() not in (before, "")

        self.wait(moved, timeout, "the next page after sign-in")
        self.check_page()

    def alert_text(self) -> str:
        alert = locators.find_first(self.driver, Locator("role", "alert"))
        try:
            return alert.text.strip() if alert is not None else ""
        except WebDriverException as exc:
            if is_stale(exc):
                return ""
            raise

    def field(self, el: WebElement) -> tuple[str, bool]:
        """A field's tag name (lower case) and whether it holds text, in one round trip."""
        tag, holds_text = self.driver.execute_script(_FIELD_JS, el)
        return str(tag), bool(holds_text)

    def type(
        self, el: WebElement, value: str, *, clear: bool = True, holds_text: bool | None = None
    ) -> None:
        """Type into a field, emptying it first if ``clear``. ``holds_text``: whether it holds
        any (from :meth:`field`), else the page is asked."""
        # Clearing is a round trip that focuses and blurs the field: only one with text needs it.
        if clear and holds_text is None:
            holds_text = self.driver.execute_script(_HOLDS_TEXT_JS, el)
        if clear and holds_text:
            el.clear()
        el.send_keys(value)

    def choose(self, select: WebElement, option: str) -> str:
        """Choose the <option> of ``select`` whose text (case-insensitive) or else value is
        ``option``; the chosen option's text."""
        got = self.driver.execute_script(_CHOOSE_JS, select, option) or {}
        if "chosen" in got:
            return str(got["chosen"])
        if "missing" in got:
            choices = ", ".join(got["missing"])
            raise StepFailed(f"no option {option!r} (options: {choices})")
        why = "hidden" if "hidden" in got else "disabled"
        raise StepFailed(f"the option {got[why]!r} cannot be chosen: it is {why}")

    # -- secrets: typed, never read --

    def type_secret(
        self, el: WebElement, value: str, *, clear: bool = True, holds_text: bool | None = None
    ) -> None:
        """Type a secret into a field that is from then on never read, nor shown in screenshots."""
        self.secret_fields.add(el.id)
        self.driver.execute_script(_MARK_TYPED_JS, el)
        self.type(el, value, clear=clear, holds_text=holds_text)

    def secret_kinds(self, found: Sequence[WebElement], *, filled_only: bool) -> list[str]:
        """Per element: "password" (a password field, with something in it if `filled_only`),
        "typed" (a field a secret was typed into) or ""."""
        kinds = self.driver.execute_script(_FIELD_KIND_JS, list(found), filled_only) or []
        return [
            kind or ("typed" if el.id in self.secret_fields else "")
            for el, kind in zip(found, kinds, strict=False)
        ]

    def refuse_secret_read(self, el: WebElement, loc: Locator) -> None:
        """Raise SecretRefused if `el` is a password field or a field a secret was typed into."""
        [kind] = self.secret_kinds([el], filled_only=False)
        if not kind:
            return
        reason = "it is a password field" if kind == "password" else "a secret was typed into it"
        raise SecretRefused(
            f"reading {loc.describe()} is refused: {reason}, and secrets are typed, never read",
            looking_for=loc.describe(),
        )

    def refuse_secret_probe(self, found: Sequence[WebElement], loc: Locator) -> None:
        """A css or xpath locator can test what a field holds (`[value^=a]`), so as not to be an
        oracle it may not match a field holding a secret. Label, role and text locators can't."""
        if not found or not uses_selectors(loc):
            return
        kinds = [k for k in self.secret_kinds(found, filled_only=True) if k]
        if kinds:
            what = {"password": "a password field"}.get(kinds[0], "a field a secret was typed into")
            raise SecretRefused(
                f"{loc.describe()} matches {what}, and a css or xpath locator may not test a "
                "field that holds a secret",
                looking_for=loc.describe(),
            )


def uses_selectors(loc: Locator) -> bool:
    """Whether a locator (or one it looks within) is css or xpath: one that can test what a
    field holds."""
    return loc.kind in ("css", "xpath") or (loc.within is not None and uses_selectors(loc.within))


def clear_quietly(el: WebElement) -> None:
    """Empty a field, if it is still there."""
    with contextlib.suppress(WebDriverException):  # the page moved on; the field went with it
        el.clear()


def _unreachable(code: str, url: str) -> PortalUnavailable:
    """The portal error for a page the browser could not load, naming the network error."""
    if code == "ERR_TOO_MANY_REDIRECTS":
        return PortalUnavailable(f"the page {url} redirects in a loop")
    named = f": {code}" if _NET_ERROR.fullmatch(f"net::{code}") else ""
    return PortalUnavailable(f"the portal could not be reached ({url}{named})")
