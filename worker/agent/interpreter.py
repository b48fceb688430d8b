"""The SOP engine: carries out an SOP's steps in a Selenium-driven browser.

`run_sop` signs in, walks the steps (waiting explicitly for every element, with a timeout per
step), records each step with the recorder, and maps what it extracted to an `Outcome` through
the SOP's outcome rules. Failures raise the errors of `worker.errors`.

Secrets are typed, never read. The stored password and TOTP secret, and the task's sensitive
inputs, are in no template context: only the sign-in step types the password (into a password
field only) and only `fill: {secret: name}` types a sensitive input. Reading a password field, or
a field a secret was typed into, is refused (`SecretRefused`, never skipped). Whatever is read
from the page is scrubbed of every secret before a template sees it, and every message, note and
result goes through the run's `Redactor` too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn, Protocol

import jinja2
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
from selenium.webdriver.support.ui import Select, WebDriverWait

from shared import sops, totp
from shared.accounts import Credentials
from shared.inputs import PersonName, snake_key
from shared.redaction import MASK, Redactor
from shared.sops import Locator, Screenshots, Sop, Step
from shared.template_sandbox import BoundedSandbox
from worker import locators
from worker.browser import egress_of
from worker.egress import Boundary, Origin
from worker.errors import (
    AgentError,
    CredentialsRejected,
    InputsInvalid,
    LeftPortal,
    PortalUnavailable,
    SecretRefused,
    StepFailed,
    TaskCanceled,
)

# How often a wait looks again. Each look is one or two WebDriver round trips of a few ms; a
# finer poll notices a page or a spinner's end sooner, which is most of a warm task's waiting.
POLL_S = 0.05


class StepStatus(StrEnum):
    """Status of one recorded step."""

    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class Outcome:
    """What the run concluded: final status, notes for a person, and the extracted values."""

    status: str
    notes: str
    result: dict[str, Any] = field(default_factory=dict)


class PortalCredentials(Protocol):
    """Anything with the sign-in fields, such as shared.accounts.Credentials."""

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def totp_secret(self) -> str | None: ...


class TaskFile(Protocol):
    """A file attached to the task, available on local disk (`path`: str or Path)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str | os.PathLike[str]: ...


class Recorder(Protocol):
    """Receives the run's trajectory as it happens."""

    def step(
        self,
        name: str,
        *,
        started_at: datetime,
        duration_ms: int,
        status: str,
        message: str,
        screenshot: bytes | None,
    ) -> None: ...

    def checkpoint(self, step_name: str) -> None:
        """Called just BEFORE an irreversible action, so the caller can persist the fact."""


class NullRecorder:
    """A recorder that keeps nothing."""

    def step(self, name: str, **kwargs: Any) -> None:
        pass

    def checkpoint(self, step_name: str) -> None:
        pass


class _SessionExpired(Exception):
    """The sign-in page appeared in the middle of the steps."""


class _Finish(Exception):
    """A `finish` step: skip the remaining steps and go to the outcome rules."""


def run_sop(
    driver: WebDriver,
    sop: Sop,
    inputs: Mapping[str, Any],
    *,
    base_url: str | None,
    credentials: PortalCredentials | Mapping[str, Any],
    files: Sequence[TaskFile] = (),
    recorder: Recorder | None = None,
    verify_only: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    request_code: Callable[[], str] | None = None,
    screenshot_every_step: bool = False,
    sensitive: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
    allowed_origins: Sequence[Origin] | None = None,
) -> Outcome:
    """Run `sop` in `driver` and return its outcome; raise an AgentError when it cannot finish.

    The browser may reach only `allowed_origins` (default: the base URL's origin); anything
    else raises LeftPortal.

    `verify_only` runs the SOP's `verify` steps instead of its steps: use it when an earlier
    attempt passed a checkpoint (it may already have submitted). `screenshot_every_step` is the
    operator's override of the SOP's `screenshots` setting (failures always get one).
    `sensitive` holds the task's sensitive inputs by name (they may also be in `inputs`); they
    are kept apart from the template context. `redactor` receives every secret of the run
    (passwords, codes, sensitive inputs), so the caller can scrub what it writes with it.
    """
    values, errors = sop.validate_inputs({**inputs, **(sensitive or {})})
    if errors:
        raise InputsInvalid(errors)
    plain, secret = sop.split_inputs(values)
    url = base_url or sop.base_url
    if not url:
        raise StepFailed("no portal base URL: give base_url or set portal.base_url in the SOP")
    try:
        origins = allowed_origins or [Origin.of(url, allow_private=True)]
    except ValueError:
        raise LeftPortal(f"the portal's base URL {url} is not an http(s) URL") from None
    run = _Run(
        driver=driver,
        sop=sop,
        inputs=plain,
        sensitive=secret,
        redactor=redactor if redactor is not None else Redactor(),
        base_url=url,
        credentials=_credentials(credentials),
        files=list(files),
        recorder=recorder or NullRecorder(),
        should_stop=should_stop,
        request_code=request_code,
        screenshot_every_step=(
            screenshot_every_step or sop.settings.screenshots == Screenshots.EVERY_STEP
        ),
        boundary=Boundary(origins, egress_of(driver)),
    )
    return run.execute(verify_only=verify_only)


def _credentials(value: PortalCredentials | Mapping[str, Any]) -> Credentials:
    if isinstance(value, Credentials):
        return value
    if isinstance(value, Mapping):
        return Credentials(value["username"], value["password"], value.get("totp_secret"))
    return Credentials(value.username, value.password, getattr(value, "totp_secret", None))


# --- conditions, templates and redaction -----------------------------------------------------


@dataclass
class _Context:
    """Template variables of a run: inputs, extracted values, loop variables."""

    inputs: dict[str, Any]
    extracted: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.inputs, "files": self.files, **self.extracted}


@lru_cache(maxsize=1)
def _lenient() -> BoundedSandbox:
    """Same sandbox, bounds and filters, but unknown names are empty/false instead of an error."""
    base = sops.template_env()
    env = BoundedSandbox(
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        max_output_chars=base.max_output_chars,
        timeout_s=base.timeout_s,
    )
    env.filters.update(base.filters)
    env.tests.update(base.tests)
    env.globals.update(base.globals)
    return env


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    expr = re.sub(r"^\s*\{\{(.*)\}\}\s*$", r"\1", expression, flags=re.S)
    return _lenient().compile_expression(expr)


def _condition(expression: str, context: Mapping[str, Any]) -> bool:
    """A condition is true or false; a variable never set counts as empty (false)."""
    return bool(_expression_value(expression, context))


def _rule_matches(expression: str, context: Mapping[str, Any]) -> bool:
    # An outcome rule whose condition cannot be evaluated (say, None > 3) simply does not match.
    try:
        return _condition(expression, context)
    except StepFailed:
        return False


def _expression_value(expression: str, context: Mapping[str, Any]) -> Any:
    try:
        value = _compiled(expression)(**context)
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise StepFailed(f"could not evaluate {expression.strip()!r}: {exc}") from None
    return None if isinstance(value, jinja2.Undefined) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --- the run ---------------------------------------------------------------------------------


class _Run:
    """State of one SOP run. Each step kind is a `_step_<kind>` method."""

    def __init__(
        self,
        *,
        driver: WebDriver,
        sop: Sop,
        inputs: dict[str, Any],
        sensitive: dict[str, str],
        redactor: Redactor,
        base_url: str,
        credentials: Credentials,
        files: list[TaskFile],
        recorder: Recorder,
        should_stop: Callable[[], bool],
        request_code: Callable[[], str] | None,
        screenshot_every_step: bool,
        boundary: Boundary,
    ) -> None:
        self.driver = driver
        self.boundary = boundary
        self.sop = sop
        self.screenshot_every_step = screenshot_every_step
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.files = files
        self.recorder = recorder
        self.should_stop = should_stop
        self.request_code = request_code
        # The template context: plain inputs, files, what was read. No secret is ever in it.
        self.ctx = _Context(inputs=inputs, files=[{"name": f.name} for f in files])
        self.sensitive = sensitive
        self.redactor = redactor
        for secret in (credentials.password, credentials.totp_secret, *sensitive.values()):
            self.redactor.add(secret)
        # WebDriver ids of the fields a secret was typed into: never read back.
        self.secret_fields: set[str] = set()
        self.passed_irreversible = False
        self.verifying = False
        self.in_login = False
        self.login_args = _login_args(sop)
        self.login_marker = Locator(kind="label", value=self.login_args["password_label"])
        self.need_text = any(p.where == "text" for p in sop.portal_errors)

    # -- top level --

    def execute(self, *, verify_only: bool) -> Outcome:
        self.verifying = verify_only
        steps = self.sop.verify if verify_only else self.sop.steps
        if verify_only and not steps:
            raise StepFailed("this SOP has no verify section")
        relogins = 0
        while True:
            try:
                self._run_steps(steps, prefix="")
                break
            except _Finish:
                break
            except _SessionExpired:
                relogins += 1
                if relogins > self.sop.settings.max_relogins:
                    raise PortalUnavailable(
                        f"the portal ended the session {relogins} times during the task"
                    ) from None
                steps = self._resume_after_expiry()
        self._check_boundary()
        return self._outcome()

    def _resume_after_expiry(self) -> tuple[Step, ...]:
        """Sign in again; restart from the top, or verify if a submit may have happened."""
        started, t0 = datetime.now(UTC), time.monotonic()
        name = "Session expired: sign in again"
        try:
            message = self._login(self.login_args, self._timeout(None))
        except AgentError as exc:
            self._fail(name, started, t0, exc)
        self.verifying = self.verifying or self.passed_irreversible
        resume = "verifying the submission" if self.verifying else "restarting"
        self._record(
            name,
            started,
            t0,
            StepStatus.OK,
            f"{message}; {resume} from the top",
        )
        self.ctx.extracted.clear()
        return self.sop.verify if self.verifying else self.sop.steps

    def _outcome(self) -> Outcome:
        context = self.ctx.as_dict()
        result = _jsonable(self.ctx.extracted)
        for rule in self.sop.outcomes:
            if rule.when is None or _rule_matches(rule.when, context):
                try:
                    notes = _lenient().from_string(rule.notes).render(context).strip()
                except jinja2.TemplateError as exc:
                    # The work is done by now; a broken notes template must not undo that.
                    notes = f"(the SOP's notes could not be written: {exc})"
                return Outcome(
                    status=str(rule.status),
                    notes=self._redact(notes),
                    result=self.redactor.value(result),
                )
        # Unreachable for a validated SOP (its last rule has no `when`); kept for safety.
        return Outcome("completed_with_issues", "No outcome rule matched.", result)

    # -- steps --

    def _run_steps(self, steps: Sequence[Step], prefix: str) -> None:
        for n, step in enumerate(steps, start=1):
            if self.should_stop():
                raise TaskCanceled("the task was canceled")
            self._run_step(step, f"{prefix}{n}")

    def _run_step(self, step: Step, index: str) -> None:
        started, t0 = datetime.now(UTC), time.monotonic()
        name = f"{index}. {self._title(step)}"
        try:
            skip = step.when is not None and not _condition(step.when, self.ctx.as_dict())
        except StepFailed as exc:
            self._fail(name, started, t0, exc)
        if skip:
            self._record(name, started, t0, StepStatus.SKIPPED, "condition is false")
            return
        if step.irreversible:
            self.recorder.checkpoint(self._redact(self._title(step)))
            self.passed_irreversible = True
        try:
            try:
                message = self._call(step, index, name, started, t0)
            except jinja2.TemplateError as exc:
                raise StepFailed(f"template error: {exc}") from None
        except (_SessionExpired, _Finish, TaskCanceled):
            raise
        except StepFailed as exc:
            exc.step_index = exc.step_index or index
            exc.step_name = exc.step_name or self._redact(self._title(step))
            # An attempt to read a secret ends the task, optional or not.
            if step.optional and not isinstance(exc, SecretRefused):
                self._record(name, started, t0, StepStatus.SKIPPED, f"optional: {exc}")
                return
            self._fail(name, started, t0, exc)
        except AgentError as exc:
            self._fail(name, started, t0, exc)
        except WebDriverException as exc:
            # The browser itself broke (crash, lost session): recorded, then left to the
            # caller, which may retry with a fresh browser.
            detail = (exc.msg or type(exc).__name__).splitlines()[0]
            self._record(
                name, started, t0, StepStatus.FAILED, f"browser error: {detail}", self._png()
            )
            raise
        if message is not None:  # control-flow steps record themselves before their children
            self._record(name, started, t0, StepStatus.OK, message)

    def _call(self, step: Step, index: str, name: str, started: datetime, t0: float) -> Any:
        """Run the step's handler; redo an element step whose element a navigation replaced."""
        handler = getattr(self, f"_step_{step.kind}")
        for attempt in range(3):
            try:
                result = handler(step, index, name, started, t0)
            except WebDriverException as exc:
                # Found on the page that was just being replaced: the action did not happen.
                if not (_is_stale(exc) and step.kind in _RETRYABLE and attempt < 2):
                    self._check_boundary()  # a page that left the portal explains the failure
                    raise
            except (StepFailed, PortalUnavailable):
                self._check_boundary()
                raise
            else:
                self._check_boundary()
                return result
        raise AssertionError("unreachable")

    def _check_boundary(self) -> None:
        try:
            url: str | None = self.driver.current_url
        except WebDriverException:
            url = None
        self.boundary.check(url)

    def _fail(self, name: str, started: datetime, t0: float, exc: AgentError) -> NoReturn:
        # Redact in place so the exception that propagates carries no secret either.
        exc.args = tuple(self._redact(str(a)) for a in exc.args) or (type(exc).__name__,)
        self._record(name, started, t0, StepStatus.FAILED, str(exc), self._png())
        raise exc

    def _record(
        self,
        name: str,
        started: datetime,
        t0: float,
        status: StepStatus,
        message: str,
        screenshot: bytes | None = None,
    ) -> None:
        if screenshot is None and self.screenshot_every_step and status == StepStatus.OK:
            screenshot = self._png()
        self.recorder.step(
            self._redact(name),
            started_at=started,
            duration_ms=int((time.monotonic() - t0) * 1000),
            status=str(status),
            message=self._redact(message),
            screenshot=screenshot,
        )

    def _title(self, step: Step) -> str:
        try:
            return sops.render(step.title(), self.ctx.as_dict())
        except jinja2.TemplateError:
            return step.title()

    def _redact(self, text: str) -> str:
        return self.redactor.text(text)

    def _png(self) -> bytes | None:
        try:
            return self.driver.get_screenshot_as_png()
        except WebDriverException:
            return None

    def _timeout(self, step: Step | None) -> float:
        if step is not None and step.timeout_s is not None:
            return step.timeout_s
        return self.sop.settings.step_timeout_s

    def _render(self, template: str) -> str:
        return sops.render(template, self.ctx.as_dict())

    def _locator(self, locator: Locator) -> Locator:
        """The locator with its templates filled in."""
        value = self._render(locator.value)
        if value != locator.value and sops.selector_tests_value(locator.kind, value):
            raise SecretRefused(sops.VALUE_TEST_REFUSED)  # built by a template, so seen only now
        return replace(
            locator,
            value=value,
            name=self._render(locator.name) if locator.name else None,
            within=self._locator(locator.within) if locator.within else None,
        )

    # -- waiting and page checks --

    def _check_page(self) -> None:
        """Raise if the page is an error page, or the sign-in page in the middle of the steps."""
        try:
            marker = None if self.in_login else self.login_marker
            info = locators.probe_page(self.driver, with_text=self.need_text, marker=marker)
        except JavascriptException:
            return  # page is between documents; the next poll looks again
        if info.get("url", "").startswith("chrome-error://"):
            raise PortalUnavailable("the portal could not be reached")
        for pattern in self.sop.portal_errors:
            where = {"title": info.get("title", ""), "text": info.get("text", "")}.get(
                pattern.where, f"{info.get('title', '')}\n{info.get('headings', '')}"
            )
            if pattern.matches(where):
                shown = info.get("headings", "").split("\n")[0] or info.get("title", "")
                raise PortalUnavailable(f"the portal shows an error page: {shown}")
        if info.get("marker"):
            raise _SessionExpired()

    def _wait(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `probe` until truthy, checking for error pages and expiry in between."""

        def condition(_driver: WebDriver) -> Any:
            try:
                found = probe()
            except JavascriptException:  # document replaced mid-script; look again
                return False
            except WebDriverException as exc:
                if _is_stale(exc):  # an element of the previous page; look again
                    return False
                raise
            # Checked even on success: an alert on the sign-in page is not the answer awaited.
            self._check_page()
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
            self._check_page()
            raise StepFailed(
                f"could not find {what} within {timeout:g} s", looking_for=what
            ) from None

    def _element(self, locator: Locator, timeout: float, *, enabled: bool = True) -> WebElement:
        """Wait for the first visible (and enabled) element the locator matches."""
        loc = self._locator(locator)

        def probe() -> WebElement | None:
            found = locators.find_all(self.driver, loc, enabled=enabled)
            return found[0] if found else None

        return self._wait(probe, timeout, loc.describe())

    def _condition_met(self, cond: Mapping[str, Any]) -> str | bool:
        """One look at a wait_for condition; the matched branch's name, or False."""
        if "any_of" in cond:
            for i, sub in enumerate(cond["any_of"], start=1):
                if self._condition_met(sub):
                    return sub.get("as") or str(i)
            return False
        return (cond.get("as") or "1") if self._holds(cond) else False

    def _holds(self, cond: Mapping[str, Any]) -> bool:
        if "visible" in cond:
            return self._shown(cond["visible"])
        if "gone" in cond:
            return not self._shown(cond["gone"])
        if "text" in cond:
            return self._shown(Locator("text", cond["text"]))
        return self._render(cond["url_contains"]) in self.driver.current_url

    def _shown(self, locator: Locator) -> bool:
        loc = self._locator(locator)
        found = locators.find_first(self.driver, loc)
        if found is not None:
            self._refuse_secret_probe([found], loc)
        return found is not None

    def _wait_condition(self, cond: Mapping[str, Any], timeout: float) -> str:
        return self._wait(lambda: self._condition_met(cond), timeout, _describe(cond, self))

    # -- interaction helpers --

    def _click(self, locator: Locator, timeout: float) -> None:
        """Click, dismissing a covering overlay and retrying once if the click is intercepted."""
        retried = False
        for _ in range(3):
            el = self._element(locator, timeout)
            if retried:  # WebDriver scrolls by itself; after an overlay, centre it to be sure
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            try:
                el.click()
                return
            except _INTERCEPTED:
                if retried:
                    raise StepFailed(
                        f"{locator.describe()} is covered by another element",
                        looking_for=locator.describe(),
                    ) from None
                self._dismiss_overlays()
                retried = True
            except WebDriverException as exc:
                if not _is_stale(exc):
                    raise
                # re-rendered or replaced under us: find it again
        raise StepFailed(f"could not click {locator.describe()}", looking_for=locator.describe())

    def _dismiss_overlays(self) -> bool:
        """Click whatever `dismiss` locator is showing (announcement modals); True if any."""
        dismissed = False
        for locator in self.sop.settings.dismiss:
            loc = self._locator(locator)
            el = locators.find_first(self.driver, loc)
            if el is None:
                continue
            try:
                el.click()
            except WebDriverException:
                continue
            dismissed = True
            self._wait_gone(loc, 5)
        return dismissed

    def _wait_gone(self, loc: Locator, timeout: float) -> None:
        def gone() -> bool:
            return locators.find_first(self.driver, loc) is None

        self._wait(gone, timeout, f"{loc.describe()} to go away")

    def _type(self, el: WebElement, value: str, *, clear: bool = True) -> None:
        if clear:
            el.clear()
        el.send_keys(value)

    def _type_secret(self, el: WebElement, value: str, *, clear: bool = True) -> None:
        """Type a secret into a field that is from then on never read, nor shown in screenshots."""
        self.secret_fields.add(el.id)
        self.driver.execute_script(_MARK_TYPED_JS, el)
        self._type(el, value, clear=clear)

    def _secret_kinds(self, found: Sequence[WebElement], *, filled_only: bool) -> list[str]:
        """Per element: "password" (a password field, with something in it if `filled_only`),
        "typed" (a field a secret was typed into) or ""."""
        kinds = self.driver.execute_script(_FIELD_KIND_JS, list(found), filled_only) or []
        return [
            kind or ("typed" if el.id in self.secret_fields else "")
            for el, kind in zip(found, kinds, strict=False)
        ]

    def _refuse_secret_read(self, el: WebElement, loc: Locator) -> None:
        """Raise SecretRefused if `el` is a password field or a field a secret was typed into."""
        [kind] = self._secret_kinds([el], filled_only=False)
        if not kind:
            return
        reason = "it is a password field" if kind == "password" else "a secret was typed into it"
        raise SecretRefused(
            f"reading {loc.describe()} is refused: {reason}, and secrets are typed, never read",
            looking_for=loc.describe(),
        )

    def _refuse_secret_probe(self, found: Sequence[WebElement], loc: Locator) -> None:
        """A css or xpath locator can test what a field holds (`[value^=a]`), so as not to be an
        oracle it may not match a field holding a secret. Label, role and text locators can't."""
        if not found or not _uses_selectors(loc):
            return
        kinds = [k for k in self._secret_kinds(found, filled_only=True) if k]
        if kinds:
            what = {"password": "a password field"}.get(kinds[0], "a field a secret was typed into")
            raise SecretRefused(
                f"{loc.describe()} matches {what}, and a css or xpath locator may not test a "
                "field that holds a secret",
                looking_for=loc.describe(),
            )

    # -- step kinds (each returns the step's message, or None if it recorded itself) --

    def _step_goto(self, step: Step, *_: Any) -> str:
        url = self._render(step.args["url"])
        self._goto(url)
        return f"opened {url}"

    def _goto(self, url: str) -> None:
        full = self.boundary.target(url, self.base_url)  # only http(s) on the portal's origins
        try:
            self.driver.get(full)
        except TimeoutException:
            self._check_boundary()
            raise PortalUnavailable(f"the page {url} did not load in time") from None
        except WebDriverException as exc:
            self._check_boundary()
            if "net::ERR" in (exc.msg or ""):
                raise PortalUnavailable(f"the portal could not be reached ({url})") from None
            raise
        self._check_boundary()
        self._check_page()

    def _step_fill(self, step: Step, *_: Any) -> str:
        el = self._element(step.args["locator"], self._timeout(step))
        where = self._locator(step.args["locator"]).describe()
        if step.args.get("secret"):
            if el.tag_name.lower() == "select":
                raise SecretRefused(f"a sensitive input is only typed, and {where} is a list")
            value = self.sensitive.get(step.args["secret"], "")
            self._type_secret(el, value, clear=step.args["clear"])
            return f"filled {where} with {MASK}"
        value = self._render(step.args["value"])
        if el.tag_name.lower() == "select":
            _choose(el, value)
        else:
            self._type(el, value, clear=step.args["clear"])
        return f"filled {self._locator(step.args['locator']).describe()} with {_short(value)}"

    def _step_select(self, step: Step, *_: Any) -> str:
        loc = step.args["locator"]
        el = self._element(loc, self._timeout(step))
        option = self._render(step.args["option"])
        if el.tag_name.lower() == "select":
            _choose(el, option)
        else:  # a custom combobox: open it, then pick the option by its text
            el.click()
            self._click(Locator("role", "option", name=option), self._timeout(step))
        return f"chose {_short(option)}"

    def _step_check(self, step: Step, *_: Any) -> str:
        el = self._element(step.args["locator"], self._timeout(step))
        if el.is_selected() != step.args["checked"]:
            self._click(step.args["locator"], self._timeout(step))
        return "ticked" if step.args["checked"] else "unticked"

    def _step_click(self, step: Step, *_: Any) -> str:
        self._click(step.args["locator"], self._timeout(step))
        self._check_page()  # it may have navigated: catch an error or sign-in page early
        return f"clicked {self._locator(step.args['locator']).describe()}"

    def _step_upload(self, step: Step, *_: Any) -> str:
        chosen = self._chosen_files(step.args["files"])
        if not chosen:
            if step.args["required"]:
                raise StepFailed(f"no task file matches {step.args['files']!r}")
            return "no task files to upload"
        el = self._element(step.args["locator"], self._timeout(step))
        if len(chosen) > 1 and not el.get_attribute("multiple"):
            chosen = chosen[:1]  # the control takes one file; the first is the main document
        el.send_keys("\n".join(str(Path(f.path).resolve()) for f in chosen))
        return "uploaded " + ", ".join(f.name for f in chosen)

    def _chosen_files(self, spec: str | list[str]) -> list[TaskFile]:
        if spec == "all":
            return list(self.files)
        patterns = [self._render(p) for p in (spec if isinstance(spec, list) else [spec])]
        return [f for f in self.files if any(fnmatch.fnmatch(f.name, p) for p in patterns)]

    def _step_wait_for(self, step: Step, *_: Any) -> str:
        matched = self._wait_condition(step.args, self._timeout(step))
        if step.args.get("into"):
            self.ctx.extracted[step.args["into"]] = matched
        return f"saw {_describe(step.args, self)}" + (
            f" ({matched})" if "any_of" in step.args else ""
        )

    def _step_extract(self, step: Step, *_: Any) -> str:
        args = step.args
        # Scrubbed as it leaves the page: a secret the portal shows back never reaches a
        # template, where a filter could take it apart.
        value = self.redactor.value(self._extract_value(args, self._timeout(step)))
        if isinstance(value, str) and args.get("pattern"):
            m = re.search(args["pattern"], value)
            if m is None and "default" not in args:
                raise StepFailed(f"{_short(value)} does not match {args['pattern']!r}")
            value = (m.group(1) if m.groups() else m.group(0)) if m else args["default"]
        self.ctx.extracted[args["into"]] = value
        return f"{args['into']} = {_short(repr(_jsonable(value)), 200)}"

    def _extract_value(self, args: Mapping[str, Any], timeout: float) -> Any:
        what = args["what"]
        if what == "url":
            return self.driver.current_url
        loc = self._locator(args["locator"])
        if what in ("exists", "count"):
            found = locators.find_all(self.driver, loc)
            self._refuse_secret_probe(found, loc)
            return bool(found) if what == "exists" else len(found)
        if "default" in args:
            el = locators.find_first(self.driver, loc)
            if el is None:
                return args["default"]
        else:
            el = self._element(args["locator"], timeout, enabled=False)
        self._refuse_secret_read(el, loc)
        if what == "attribute":
            return el.get_attribute(args["attribute"])
        if what == "text":
            tag = el.tag_name.lower()
            is_control = tag in ("input", "textarea", "select")
            return ((el.get_attribute("value") if is_control else el.text) or "").strip()
        rows = self.driver.execute_script(_TABLE_JS, el)
        if rows is None:
            raise StepFailed(f"{loc.describe()} is not a table", looking_for=loc.describe())
        return _pairs(rows) if what == "pairs" else _table(rows)

    def _step_if(self, step: Step, index: str, name: str, started: datetime, t0: float) -> None:
        taken = _condition(step.args["condition"], self.ctx.as_dict())
        self._record(name, started, t0, StepStatus.OK, "true" if taken else "false")
        if taken:
            self._run_steps(step.steps, f"{index}.")
        elif step.else_steps:
            self._run_steps(step.else_steps, f"{index}.else.")

    def _step_for_each(
        self, step: Step, index: str, name: str, started: datetime, t0: float
    ) -> None:
        items = _expression_value(step.args["items"], self.ctx.as_dict())
        if isinstance(items, Mapping) or not isinstance(items, list | tuple):
            raise StepFailed(f"{step.args['items']} is not a list")
        self._record(name, started, t0, StepStatus.OK, f"{len(items)} item(s)")
        var, saved = step.args["as"], dict(self.ctx.extracted)
        for i, item in enumerate(items, start=1):
            self.ctx.extracted[var] = item
            self.ctx.extracted["loop"] = {
                "index": i,
                "index0": i - 1,
                "first": i == 1,
                "last": i == len(items),
                "length": len(items),
            }
            if step.args["until"] and _condition(step.args["until"], self.ctx.as_dict()):
                break
            self._run_steps(step.steps, f"{index}.{i}.")
        for key in (var, "loop"):  # loop variables do not leak past the loop
            if key in saved:
                self.ctx.extracted[key] = saved[key]
            else:
                self.ctx.extracted.pop(key, None)

    def _step_while(self, step: Step, index: str, name: str, started: datetime, t0: float) -> None:
        self._record(name, started, t0, StepStatus.OK, "looping")
        for i in range(1, step.args["max"] + 1):
            if not _condition(step.args["condition"], self.ctx.as_dict()):
                return
            self._run_steps(step.steps, f"{index}.{i}.")
        if _condition(step.args["condition"], self.ctx.as_dict()):
            raise StepFailed(f"still going after {step.args['max']} rounds; raise `max`?")

    def _step_set(self, step: Step, *_: Any) -> str:
        for key, expr in step.args["values"].items():
            self.ctx.extracted[key] = _expression_value(expr, self.ctx.as_dict())
        return ", ".join(
            f"{k} = {_short(repr(_jsonable(self.ctx.extracted[k])))}" for k in step.args["values"]
        )

    def _step_screenshot(
        self, step: Step, index: str, name: str, started: datetime, t0: float
    ) -> None:
        self._record(name, started, t0, StepStatus.OK, step.args.get("label") or "", self._png())

    def _step_dismiss_if_present(self, step: Step, *_: Any) -> str:
        loc = self._locator(step.args["locator"])
        wait_s = step.args["wait_s"]
        if wait_s:
            try:
                el = WebDriverWait(self.driver, wait_s, poll_frequency=POLL_S).until(
                    lambda _d: locators.find_first(self.driver, loc)
                )
            except TimeoutException:
                el = None
        else:
            el = locators.find_first(self.driver, loc)
        if el is None:
            return "not shown"
        el.click()
        self._wait_gone(loc, self._timeout(step))
        return "dismissed"

    def _step_finish(self, step: Step, index: str, name: str, started: datetime, t0: float) -> None:
        self._record(name, started, t0, StepStatus.OK, self._render(step.args["message"]))
        raise _Finish()

    def _step_fail(self, step: Step, *_: Any) -> str:
        raise StepFailed(self._render(step.args["message"]))

    def _step_login(self, step: Step, *_: Any) -> str:
        return self._login(step.args, self._timeout(step))

    # -- the login macro --

    def _login(self, args: Mapping[str, Any], timeout: float) -> str:
        self.in_login = True
        try:
            url = self._render(args["url"]) if args.get("url") else ""
            if url:
                self._goto(url)
            state = self._login_state(args)
            if state == "in":
                return "already signed in"
            if state == "form":
                self._submit_password(args, timeout)
                state = self._login_state(args)
            how = ""
            if state == "code":
                how = self._enter_code(args, timeout)
            if args.get("success"):
                self._wait_condition(args["success"], timeout)
            return "signed in" + how
        finally:
            self.in_login = False

    def _login_state(self, args: Mapping[str, Any]) -> str:
        # One look for all three fields: a signed-in page (the common case) costs one round trip.
        labels = (args["code_label"], args["password_label"], args["username_label"])
        shown = locators.first_shown(self.driver, [Locator("label", label) for label in labels])
        return "in" if shown is None else ("code" if shown == 0 else "form")

    def _submit_password(self, args: Mapping[str, Any], timeout: float) -> None:
        user = locators.find_first(self.driver, Locator("label", args["username_label"]))
        if user is not None:
            self._type(user, self.credentials.username)
        label = Locator("label", args["password_label"])
        password = locators.find_first(self.driver, label)
        if password is None:  # username first, password on the next screen
            self._submit_and_wait(Locator("button", args["button"]), timeout)
            password = self._element(label, timeout)
        if self._secret_kinds([password], filled_only=False) != ["password"]:
            # Typed anywhere else (a search box), the page could show it back.
            raise SecretRefused(
                f"the sign-in step types the password only into a password field, "
                f"and {label.describe()} is not one"
            )
        self._type_secret(password, self.credentials.password)
        try:
            self._submit_and_wait(Locator("button", args["button"]), timeout)
        except AgentError:
            _clear_quietly(password)  # a sign-in left half-done leaves no password behind
            raise
        if self._login_state(args) == "form":
            alert = locators.find_first(self.driver, Locator("role", "alert"))
            said = f": {alert.text.strip()}" if alert is not None else ""
            raise CredentialsRejected(f"the portal rejected the username or password{said}")

    def _submit_and_wait(self, button: Locator, timeout: float) -> None:
        """Click a form's button and wait for the next page (or an inline message)."""
        page = self.driver.find_element("tag name", "html")
        before = self._alert_text()
        self._click(button, timeout)

        def moved() -> bool:
            try:
                page.is_enabled()
            except WebDriverException as exc:
                if _is_stale(exc):
                    return True
                raise
            return self._alert_text() not in (before, "")

        self._wait(moved, timeout, "the next page after sign-in")
        self._check_page()

    def _alert_text(self) -> str:
        alert = locators.find_first(self.driver, Locator("role", "alert"))
        try:
            return alert.text.strip() if alert is not None else ""
        except WebDriverException as exc:
            if _is_stale(exc):
                return ""
            raise

    def _enter_code(self, args: Mapping[str, Any], timeout: float) -> str:
        for attempt in range(2):
            code, how = self._one_time_code(attempt)
            self.redactor.add(code)
            field_el = self._element(Locator("label", args["code_label"]), timeout)
            self._type(field_el, code)
            self._submit_and_wait(Locator("button", args["code_button"]), timeout)
            if self._login_state(args) != "code":
                return how
        raise CredentialsRejected("the portal rejected the one-time code")

    def _one_time_code(self, attempt: int) -> tuple[str, str]:
        secret = self.credentials.totp_secret
        if secret:
            # A second try uses the next 30 s window's code, in case our clock is behind.
            return totp.code(secret, at=time.time() + 30 * attempt), " with a TOTP code"
        if self.request_code is None:
            raise CredentialsRejected(
                "the portal asks for a one-time code, but there is no TOTP secret "
                "and no one to ask for a code"
            )
        return re.sub(r"\s+", "", self.request_code()), " with a code from a person"


# --- helpers without state ---------------------------------------------------------------------


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


# Marks a field a secret is typed into: the engine refuses to read it, and Chromium draws its
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


def _uses_selectors(loc: Locator) -> bool:
    return loc.kind in ("css", "xpath") or (loc.within is not None and _uses_selectors(loc.within))


def _clear_quietly(el: WebElement) -> None:
    with contextlib.suppress(WebDriverException):  # the page moved on; the field went with it
        el.clear()


def _pairs(rows: list[list[list[Any]]]) -> dict[str, str]:
    """Label/value rows (`<th>Plan</th><td>Gold</td>`) -> {"plan": "Gold"}."""
    return {snake_key(r[0][1]): r[1][1] for r in rows if len(r) >= 2 and r[0][1]}


def _table(rows: list[list[list[Any]]]) -> list[dict[str, str]]:
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


def _choose(el: WebElement, option: str) -> None:
    """Select an <option> by visible text, case-insensitively, or by value."""
    select = Select(el)
    want = option.strip().lower()
    for opt in select.options:
        if opt.text.strip().lower() == want:
            select.select_by_visible_text(opt.text)
            return
    try:
        select.select_by_value(option)
    except NoSuchElementException:
        choices = ", ".join(o.text.strip() for o in select.options)
        raise StepFailed(f"no option {option!r} (options: {choices})") from None


def _describe(cond: Mapping[str, Any], run: _Run) -> str:
    try:
        return sops.render(sops.describe_condition(cond), run.ctx.as_dict())
    except jinja2.TemplateError:
        return sops.describe_condition(cond)


_RETRYABLE = {
    "fill",
    "select",
    "check",
    "click",
    "upload",
    "extract",
    "dismiss_if_present",
    "wait_for",
}
_INTERCEPTED = (ElementClickInterceptedException, ElementNotInteractableException)


def _is_stale(exc: WebDriverException) -> bool:
    """Whether the element belonged to a document that has since been replaced."""
    if isinstance(exc, StaleElementReferenceException):
        return True
    text = (exc.msg or "").lower()
    return "does not belong to the document" in text or "stale element" in text


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _login_args(sop: Sop) -> dict[str, Any]:
    """The first login step's options, used to sign in again after a session expires."""
    for step in sop.all_steps():
        if step.kind == "login":
            return dict(step.args)
    return {
        "url": "/login",
        "username_label": "Username",
        "password_label": "Password",
        "button": "Sign in",
        "code_label": "One-time code",
        "code_button": "Verify",
        "success": None,
    }
