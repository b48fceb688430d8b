"""The interpreter: carries out an SOP's steps in a Selenium-driven browser.

`run_sop` walks the steps (waiting explicitly for every element, with a timeout per step),
records each step with the recorder, signs in again when the session expires, and maps what it
extracted to an `Outcome` through the SOP's outcome rules. Each step kind's handler is found by
its dataclass in :data:`worker.agent.handlers.HANDLERS`; control flow (if, loops, set, finish,
fail, screenshot) is here, leaf actions in ``actions``, ``login`` and ``extraction``, the page in
``page``. Failures raise the errors of `worker.errors`.

Secrets are typed, never read. The stored password and TOTP secret, and the task's sensitive
inputs, are in no template context: only the sign-in step types the password (into a password
field only) and only `fill: {secret: name}` types a sensitive input. Reading a password field, or
a field a secret was typed into, is refused (`SecretRefused`, never skipped). Whatever is read
from the page is scrubbed of every secret before a template sees it, and every message, note and
result goes through the run's `Redactor` too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn, Protocol

import jinja2
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from shared.accounts import Credentials
from shared.redaction import Redactor
from shared.sop import expressions
from shared.sop.model import (
    EndIfStep,
    FailStep,
    FinishStep,
    ForEachStep,
    GotoStep,
    IfStep,
    Locator,
    Screenshots,
    ScreenshotStep,
    SetStep,
    Sop,
    Step,
    WhileStep,
    input_value,
)
from shared.sop.profile import DEFAULT_SIGN_IN_TIMEOUT_S, Profile, builtin_profile
from shared.template_sandbox import text_size

# Importing the handler modules registers their step kinds.
from worker.agent import actions, extraction, locators, login, review  # noqa: F401
from worker.agent.handlers import HANDLERS, At, handles
from worker.agent.limits import Cut, ReadLimits, Trajectory, bounded
from worker.agent.page import Page, SessionExpired, SessionSigns, is_stale
from worker.agent.review import Review
from worker.agent.values import jsonable, short
from worker.browser import answering_dialogs, egress_of, take_dialogs
from worker.egress import Boundary, Origin
from worker.errors import (
    AgentError,
    InputsInvalid,
    LeftPortal,
    PortalUnavailable,
    SecretRefused,
    StepFailed,
    TaskCanceled,
    TrajectoryFull,
)


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
        kind: str = "other",
    ) -> None: ...

    def checkpoint(self, step_name: str) -> None:
        """Called just BEFORE an irreversible action, so the caller can persist the fact."""


class NullRecorder:
    """A recorder that keeps nothing."""

    def step(self, name: str, **kwargs: Any) -> None:
        pass

    def checkpoint(self, step_name: str) -> None:
        pass


class _Finish(Exception):
    """A `finish` step: skip the remaining steps and go to the outcome rules."""


class _End(Exception):
    """An `end_if` step saw its sign: the task ends with this outcome, past the rules."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class _Builtin:
    """The default of run_sop's `profile`: the built-in profile of the SOP's portal, if any."""


BUILTIN_PROFILE = _Builtin()


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
    review: Review | None = None,
    profile: Profile | None | _Builtin = BUILTIN_PROFILE,
    limits: ReadLimits | None = None,
    renew_credentials: Callable[[], Credentials] | None = None,
    trajectory: Trajectory | None = None,
) -> Outcome:
    """Run `sop` in `driver` and return its outcome; raise an AgentError when it cannot finish.

    `profile` is the portal's profile (docs/portals.md): its sign-in, prelude, error pages,
    pop-ups and the explicit rule that tells its sign-in page. By default, the built-in profile
    of the SOP's portal if it has one; None runs the SOP without a profile.

    The browser may reach only `allowed_origins` (default: the base URL's origin); anything
    else raises LeftPortal.

    `verify_only` runs the SOP's `verify` steps instead of its steps: use it when an earlier
    attempt passed a checkpoint (it may already have submitted). `screenshot_every_step` is the
    operator's override of the SOP's `screenshots` setting (failures always get one).
    `sensitive` holds the task's sensitive inputs by name (they may also be in `inputs`); they
    are kept apart from the template context. `redactor` receives every secret of the run
    (passwords, codes, sensitive inputs), so the caller can scrub what it writes with it.
    `review` is the task's review state: a run that reaches a review point unapproved raises
    ReviewRequested (see ``worker.agent.review``). `limits` bound what the run keeps of the
    portal's pages (default: the settings' defaults; see ``worker.agent.limits``).
    `renew_credentials` gives the login stored now, read again before a sign-in in the middle of
    the run (the portal ended the session): the account may have changed it, or deleted it
    (CredentialsRemoved), since the run began. `trajectory` bounds the steps and screenshots
    the task records, and counts them (default: the settings' defaults, nothing recorded yet;
    give every run of a task the same one): past its steps the run raises TrajectoryFull, and
    past its screenshots it records none and the outcome says so.
    """
    if isinstance(profile, _Builtin):
        try:
            profile = builtin_profile(sop.portal)
        except KeyError:
            profile = None
    values, errors = sop.validate_inputs({**inputs, **(sensitive or {})})
    if profile is not None:
        errors += _profile_inputs(sop, profile, values)
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
    run = Run(
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
        review=review or Review(),
        profile=profile,
        limits=limits or ReadLimits(),
        renew_credentials=renew_credentials,
        trajectory=trajectory,
    )
    try:
        outcome = run.execute(verify_only=verify_only)
        return bounded(outcome, list(run.cuts.values()), run.limits.result_bytes, run.trajectory)
    except AgentError as exc:
        # Every failure shows in the trajectory as a failed step with the page it left.
        if not run.failure_recorded and not isinstance(exc, TaskCanceled):
            run.record_failure(exc)
        raise
    finally:
        # A portal that holds a user to few sessions gets this one back before the task ends,
        # so no session of ours outlives it (docs/portals.md, sign_out).
        if run.holds_session and profile is not None and profile.sign_out is not None:
            timeout = run.sign_in.timeout_s if run.sign_in else DEFAULT_SIGN_IN_TIMEOUT_S
            login.sign_out(run, profile.sign_out, timeout)


def _profile_inputs(sop: Sop, profile: Profile, values: dict[str, Any]) -> list[dict[str, str]]:
    """Normalise into ``values`` the inputs the profile's prelude reads (unless the SOP
    declares them itself); absent ones are empty. The problems of malformed ones."""
    declared = {spec.name for spec in sop.inputs}
    errors = []
    for spec in profile.inputs:
        if spec.name in declared:
            continue
        value, error = input_value(spec, values)
        if error:
            errors.append({"field": spec.name, "message": error})
        values[spec.name] = value
    return errors


def _credentials(value: PortalCredentials | Mapping[str, Any]) -> Credentials:
    if isinstance(value, Credentials):
        return value
    if isinstance(value, Mapping):
        return Credentials(value["username"], value["password"], value.get("totp_secret"))
    return Credentials(value.username, value.password, getattr(value, "totp_secret", None))


# --- conditions --------------------------------------------------------------------------------


@dataclass
class _Context:
    """Template variables of a run: inputs, extracted values, loop variables."""

    inputs: dict[str, Any]
    extracted: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.inputs, "files": self.files, **self.extracted}


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
        return expressions.evaluate(expression, context)
    except jinja2.TemplateError as exc:  # (the sandbox makes every Python error one)
        raise StepFailed(f"could not evaluate {expression.strip()!r}: {exc}") from None


# --- the run ---------------------------------------------------------------------------------


class Run:
    """State of one SOP run: the page, the variables, the trajectory."""

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
        review: Review,
        profile: Profile | None = None,
        limits: ReadLimits | None = None,
        renew_credentials: Callable[[], Credentials] | None = None,
        trajectory: Trajectory | None = None,
    ) -> None:
        self.sop = sop
        self.limits = limits or ReadLimits()
        # What the task recorded (every run of it): bounded, as a loop could record forever.
        self.trajectory = trajectory if trajectory is not None else Trajectory()
        # The extracts that kept less than the page had, by variable: the outcome says so.
        self.cuts: dict[str, Cut] = {}
        self.profile = profile
        self.review = review
        self.review_passed = False  # an approved task passed a review point in this run
        self.screenshot_every_step = screenshot_every_step
        self.credentials = credentials
        self.renew_credentials = renew_credentials
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
        self.passed_irreversible = False
        self.verifying = False
        self.failure_recorded = False
        # Whether the browser may hold a portal session this run opened or found: what the
        # profile's sign_out ends when the run is over.
        self.holds_session = False
        own_login = sop.login()
        # An SOP with its own login step signs in itself (docs/portals.md, precedence): the
        # profile's sign-in and prelude are then not run for it.
        self.signs_in_itself = own_login is not None
        self.sign_in = login.sign_in_again(own_login, profile)
        self.page = Page(
            driver=driver,
            boundary=boundary,
            base_url=base_url,
            portal_errors=(*(profile.errors if profile else ()), *sop.portal_errors),
            dismiss=(*(profile.dismiss if profile else ()), *sop.settings.dismiss),
            session=SessionSigns(self.sign_in, profile.session_expired if profile else ()),
            render=self.render,
            text_chars=self.limits.chars,
        )

    # -- top level --

    def execute(self, *, verify_only: bool) -> Outcome:
        self.verifying = verify_only
        steps = self.sop.verify if verify_only else self.sop.steps
        if verify_only and not steps:
            raise StepFailed("this SOP has no verify section")
        relogins = 0
        # Sign in from the profile (the first time only) and run its prelude, unless the SOP
        # signs in itself: then its own steps do both.
        prepare, signed_in = not self.signs_in_itself, False
        while True:
            try:
                if prepare:
                    self._enter(sign_in=not signed_in)
                # The SOP's own steps answer dialogs as its settings say; the profile's sign-in
                # and prelude, outside, answer OK unless a step of theirs says otherwise.
                with answering_dialogs(self.page.driver, self.sop.settings.dialogs):
                    self.run_steps(steps, prefix="")
                break
            except _Finish:
                break
            except _End as end:
                self.page.check_boundary()
                return end.outcome
            except SessionExpired:
                relogins += 1
                if relogins > self.sop.settings.max_relogins:
                    at = At("", "Session expired again", datetime.now(UTC), time.monotonic())
                    self._fail(
                        at,
                        PortalUnavailable(
                            f"the portal ended the session {relogins} times during the task"
                        ),
                    )
                steps = self._resume_after_expiry()
                signed_in = True
        self.page.check_boundary()
        return self._outcome()

    def _enter(self, *, sign_in: bool) -> None:
        """:meth:`_prepare`, saying of a portal failure that it came before the task's steps."""
        try:
            self._prepare(sign_in=sign_in)
        except PortalUnavailable as exc:
            exc.at_entry = True
            raise

    def _prepare(self, *, sign_in: bool) -> None:
        """What every task on the portal does first: the profile's sign-in, then its prelude."""
        profile = self.profile
        if profile is None:
            return
        opened, how = None, ""  # the page the sign-in left the browser on, just loaded
        if profile.sign_in is not None and sign_in:
            at = At("", f"Sign in to {profile.title}", datetime.now(UTC), time.monotonic(), "login")
            try:
                message = login.sign_in(self, profile.sign_in, profile.sign_in.timeout_s)
                if message == login.ALREADY_SIGNED_IN:
                    how = "the sign-in found it signed in"
                else:
                    how = "the sign-in ended on it"
                message += self._close_popups()
                opened = self.page.driver.current_url
            except AgentError as exc:
                self._fail(at, exc)
            self.record(at, StepStatus.OK, message)
        prelude, start = profile.prelude, 1
        if opened is not None and self._opens(prelude[0] if prelude else None, opened):
            # The page the sign-in opened (a browser still signed in from the account's last
            # task) or ended on is just loaded: loading it a second time would only cost time.
            at = At("p1", f"p1. {self._title(prelude[0])}", datetime.now(UTC), time.monotonic(),
                    prelude[0].kind)  # fmt: skip
            self.record(at, StepStatus.OK, f"already open: {how}")
            prelude, start = prelude[1:], 2
        # What the prelude reads is the portal's business: it is not the task's result, and the
        # SOP's steps see the values as they were before it.
        kept = dict(self.ctx.extracted)
        try:
            self.run_steps(prelude, prefix="p", start=start)
        finally:
            self.ctx.extracted.clear()
            self.ctx.extracted.update(kept)

    def _opens(self, step: Step | None, url: str) -> bool:
        """Whether ``step`` is an unconditional goto of ``url``."""
        if not isinstance(step, GotoStep) or step.when is not None:
            return False
        try:
            return self.page.boundary.target(self.render(step.url), self.page.base_url) == url
        except AgentError:
            return False  # the step itself will say what is wrong with it

    def _close_popups(self) -> str:
        closed = self.page.dismiss_overlays()
        return f"; closed {', '.join(closed)}" if closed else ""

    def _resume_after_expiry(self) -> tuple[Step, ...]:
        """Sign in again; restart from the top, or verify if a submit may have happened."""
        at = At("", "Session expired: sign in again", datetime.now(UTC), time.monotonic(), "login")
        if self.sign_in is None:  # unreachable: without a sign-in, no sign-in page is known
            raise PortalUnavailable("the portal ended the session, and it has no sign-in")
        try:
            self._renew_credentials()
            timeout = self.sign_in.timeout_s if self.profile else self.timeout(None)
            message = login.sign_in(self, self.sign_in, timeout) + self._close_popups()
        except AgentError as exc:
            if isinstance(exc, PortalUnavailable):
                exc.at_entry = True
            self._fail(at, exc)
        self.verifying = self.verifying or self.passed_irreversible
        resume = "verifying the submission" if self.verifying else "restarting"
        self.record(at, StepStatus.OK, f"{message}; {resume} from the top")
        self.ctx.extracted.clear()
        self.cuts.clear()
        return self.sop.verify if self.verifying else self.sop.steps

    def _renew_credentials(self) -> None:
        """The login stored now, for a sign-in in the middle of the run: never one the account
        changed or deleted since the run began."""
        if self.renew_credentials is None:
            return
        self.credentials = self.renew_credentials()
        for secret in (self.credentials.password, self.credentials.totp_secret):
            self.redactor.add(secret)

    def _outcome(self) -> Outcome:
        context = self.ctx.as_dict()
        result = jsonable(self.ctx.extracted)
        for rule in self.sop.outcomes:
            if rule.when is None or _rule_matches(rule.when, context):
                try:
                    notes = expressions.render_leniently(rule.notes, context).strip()
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

    def run_steps(self, steps: Sequence[Step], prefix: str, start: int = 1) -> None:
        for n, step in enumerate(steps, start=start):
            if self.should_stop():
                raise TaskCanceled("the task was canceled")
            if self.trajectory.full():
                raise TrajectoryFull(
                    f"stopped before step {prefix}{n}: the task recorded"
                    f" {self.trajectory.max_steps:,} steps, the most one task may (MAX_TASK_STEPS)"
                )
            self._run_step(step, f"{prefix}{n}")

    def _run_step(self, step: Step, index: str) -> None:
        """Run one step, its page's dialogs answered as it says (or as the step around it)."""
        with answering_dialogs(self.page.driver, step.dialogs):
            self._step(step, index)

    def _step(self, step: Step, index: str) -> None:
        at = At(
            index,
            f"{index}. {self._title(step)}",
            datetime.now(UTC),
            time.monotonic(),
            kind=step.kind,
        )
        try:
            skip = step.when is not None and not _condition(step.when, self.ctx.as_dict())
        except StepFailed as exc:
            self._fail(at, exc)
        if skip:
            self.record(at, StepStatus.SKIPPED, "condition is false")
            return
        if step.irreversible:
            review.before_irreversible(self, step, at)
            self.recorder.checkpoint(self._redact(self._title(step)))
            self.passed_irreversible = True
        try:
            message = self._call(step, at)
        except (SessionExpired, _Finish, _End, TaskCanceled, TrajectoryFull):
            # (a step limit is the task's, not this step's: recorded once, by run_sop)
            raise
        except StepFailed as exc:
            exc.step_index = exc.step_index or index
            exc.step_name = exc.step_name or self._redact(self._title(step))
            # An attempt to read a secret ends the task, optional or not.
            if step.optional and not isinstance(exc, SecretRefused):
                self.record(at, StepStatus.SKIPPED, f"optional: {exc}")
                return
            self._fail(at, exc)
        except AgentError as exc:
            self._fail(at, exc)
        except WebDriverException as exc:
            # The browser itself broke (crash, lost session): recorded, then left to the
            # caller, which may retry with a fresh browser.
            detail = (exc.msg or type(exc).__name__).splitlines()[0]
            self.record(at, StepStatus.FAILED, f"browser error: {detail}", shot=True)
            self.failure_recorded = True
            raise
        if message is not None:  # control-flow steps record themselves before their children
            self.record(at, StepStatus.OK, message)

    def _call(self, step: Step, at: At) -> str | None:
        """Run the step's handler; redo an element step whose element a navigation replaced."""
        handler = HANDLERS[type(step)]
        for attempt in range(3):
            try:
                result = handler.run(self, step, at)
            except WebDriverException as exc:
                # Found on the page that was just being replaced: the action did not happen.
                if not (is_stale(exc) and handler.redo_when_stale and attempt < 2):
                    self.page.check_boundary()  # a page that left the portal explains it
                    raise
            except (StepFailed, PortalUnavailable):
                self.page.check_boundary()
                raise
            else:
                self.page.check_boundary()
                return result
        raise AssertionError("unreachable")

    def _fail(self, at: At, exc: AgentError) -> NoReturn:
        self.record_failure(exc, at)
        raise exc

    def record_failure(self, exc: AgentError, at: At | None = None) -> None:
        """Record `exc` as a failed step with a screenshot of the page (redacting it in place,
        so the exception that propagates carries no secret either)."""
        exc.args = tuple(self._redact(str(a)) for a in exc.args) or (type(exc).__name__,)
        at = at or At("", "The task could not go on", datetime.now(UTC), time.monotonic())
        self.record(at, StepStatus.FAILED, str(exc), shot=True)
        self.failure_recorded = True

    def record(self, at: At, status: StepStatus, message: str, *, shot: bool = False) -> None:
        """Record a step, with a screenshot of the page if ``shot`` (or every step's setting
        asks for one) and the task may store one more (MAX_TASK_SCREENSHOTS)."""
        self.trajectory.steps += 1
        shot = shot or (self.screenshot_every_step and status == StepStatus.OK)
        screenshot = self.page.png() if shot and self.trajectory.take_screenshot() else None
        dialogs = take_dialogs(self.page.driver)
        if dialogs:  # the browser answered them: what the portal said belongs to the step
            message += "; the page showed " + _dialogs(dialogs)
        self.recorder.step(
            self._redact(at.name),
            started_at=at.started,
            duration_ms=int((time.monotonic() - at.t0) * 1000),
            status=str(status),
            message=self._redact(message),
            screenshot=screenshot,
            kind=at.kind,
        )

    def title(self, step: Step) -> str:
        """The step's title with the run's variables filled in."""
        return self._title(step)

    def _title(self, step: Step) -> str:
        try:
            return expressions.render(step.title(), self.ctx.as_dict())
        except jinja2.TemplateError:
            return step.title()

    def _redact(self, text: str) -> str:
        return self.redactor.text(text)

    def timeout(self, step: Step | None) -> float:
        """The step's timeout, or the SOP's."""
        if step is not None and step.timeout_s is not None:
            return step.timeout_s
        return self.sop.settings.step_timeout_s

    def render(self, template: str) -> str:
        """A template filled in with the run's variables; StepFailed if it cannot be written
        (an unknown name, a format's missing name...), as :meth:`evaluate` says of a value.
        The SOP's steps and the profile's sign-in alike render through here."""
        try:
            return expressions.render(template, self.ctx.as_dict())
        except jinja2.TemplateError as exc:
            raise StepFailed(f"template error: {exc}") from None

    def evaluate(self, expression: str) -> Any:
        """An expression's value with the run's variables; StepFailed if it cannot be had."""
        return _expression_value(expression, self.ctx.as_dict())

    def holds(self, condition: str) -> bool:
        """Whether a condition holds; a variable never set counts as empty (false)."""
        return _condition(condition, self.ctx.as_dict())


def _dialogs(dialogs: list[tuple[str, str]], shown: int = 3) -> str:
    """The dialogs a page showed, in words: the first few (with the answer, when it was
    Cancel), and how many in all."""
    said = ", ".join(
        f"a dialog: {short(repr(text))}" + (f" (answered {button})" if button != "OK" else "")
        for text, button in dialogs[:shown]
    )
    more = len(dialogs) - shown
    return said if more <= 0 else f"{said} and {more} more dialog(s)"


# --- control flow ----------------------------------------------------------------------------


@handles(IfStep)
def _if(run: Run, step: IfStep, at: At) -> None:
    taken = run.holds(step.condition)
    run.record(at, StepStatus.OK, "true" if taken else "false")
    if taken:
        run.run_steps(step.steps, f"{at.index}.")
    elif step.else_steps:
        run.run_steps(step.else_steps, f"{at.index}.else.")


@handles(ForEachStep)
def _for_each(run: Run, step: ForEachStep, at: At) -> None:
    items = run.evaluate(step.items)
    if isinstance(items, Mapping) or not isinstance(items, list | tuple):
        raise StepFailed(f"{step.items} is not a list")
    run.record(at, StepStatus.OK, f"{len(items)} item(s)")
    extracted = run.ctx.extracted
    var, saved = step.var, dict(extracted)
    for i, item in enumerate(items, start=1):
        extracted[var] = item
        extracted["loop"] = {
            "index": i,
            "index0": i - 1,
            "first": i == 1,
            "last": i == len(items),
            "length": len(items),
        }
        if step.until and run.holds(step.until):
            break
        run.run_steps(step.steps, f"{at.index}.{i}.")
    for key in (var, "loop"):  # loop variables do not leak past the loop
        if key in saved:
            extracted[key] = saved[key]
        else:
            extracted.pop(key, None)


@handles(WhileStep)
def _while(run: Run, step: WhileStep, at: At) -> None:
    run.record(at, StepStatus.OK, "looping")
    for i in range(1, step.max_rounds + 1):
        if not run.holds(step.condition):
            return
        run.run_steps(step.steps, f"{at.index}.{i}.")
    if run.holds(step.condition):
        raise StepFailed(f"still going after {step.max_rounds} rounds; raise `max`?")


@handles(SetStep)
def _set(run: Run, step: SetStep, at: At) -> str:
    limit = run.limits.result_bytes
    for key, expr in step.values.items():
        value = run.evaluate(expr)
        # A value doubled at each round of a `while` (`s ~ s`) would fill the worker's memory
        # long before the task's result, which keeps no more than this, could hold it.
        if text_size(value, limit) > limit:
            raise StepFailed(
                f"`{key}` would hold more than a task's result may ({limit} characters,"
                " MAX_RESULT_BYTES)"
            )
        run.ctx.extracted[key] = value
    return ", ".join(f"{k} = {short(repr(jsonable(run.ctx.extracted[k])))}" for k in step.values)


@handles(ScreenshotStep)
def _screenshot(run: Run, step: ScreenshotStep, at: At) -> None:
    run.record(at, StepStatus.OK, step.label or "", shot=True)


@handles(FinishStep)
def _finish(run: Run, step: FinishStep, at: At) -> None:
    run.record(at, StepStatus.OK, run.render(step.message))
    raise _Finish()


@handles(FailStep)
def _fail_step(run: Run, step: FailStep, at: At) -> str:
    raise StepFailed(run.render(step.message))


@handles(EndIfStep)
def _end_if(run: Run, step: EndIfStep, at: At) -> str | None:
    page, cond = run.page, step.condition
    met = page.condition_met(cond)
    if not met and step.wait_s:
        try:
            met = page.wait(lambda: page.condition_met(cond), step.wait_s, "")
        except StepFailed:
            met = False
    if not met:
        return "not shown; going on"
    locator = cond.get("visible") or Locator("text", cond["text"], case=cond.get("case"))
    el = locators.find_first(page.driver, page.locator(locator))
    seen, reasons = _seen(run, el)
    run.ctx.extracted["seen"] = seen
    if reasons:
        run.cuts["seen"] = Cut(f"step {at.index} ({run.title(step)})", "seen", reasons)
    context = run.ctx.as_dict()
    try:
        notes = expressions.render_leniently(step.notes, context).strip()
    except jinja2.TemplateError as exc:
        notes = f"(the SOP's notes could not be written: {exc})"
    cut = f"; cut: {'; '.join(reasons)}" if reasons else ""
    run.record(at, StepStatus.OK, f"shown: {short(seen)}{cut}; ending the task {step.status}")
    outcome = Outcome(
        status=str(step.status),
        notes=run.redactor.text(notes),
        result=run.redactor.value(jsonable(run.ctx.extracted)),
    )
    raise _End(outcome)


def _seen(run: Run, el: WebElement | None) -> tuple[str, tuple[str, ...]]:
    """What an `end_if` saw, for its notes: the element's visible text, scrubbed as everything
    read is, and cut to MAX_EXTRACT_CHARS as an extract's text is; what the cut left out."""
    if el is None:
        return "", ()
    text, had = extraction.read_text(run.page.driver, el, run.limits.chars, values=False)
    return extraction.keep_text("seen", run.redactor.text(text), had, run.limits.chars)
