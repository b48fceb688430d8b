"""Running one task: claim it, drive the portal by its SOP, record the trajectory, finish it.

The claim (a lease in Postgres, extended by a heartbeat) makes a second delivery of the same
message a no-op, and lets the scheduler retry the task if this process dies. The final status
and the webhook message are written in one transaction.

Our own faults never end a task: every database write is retried through an outage for
``DB_RETRY_S``; past that the worker gives its claim up without a status, and the scheduler
hands the task out again when the lease expires (verifying, not redoing, a passed submit).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from selenium.common.exceptions import WebDriverException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base

from shared import logs, metrics, outages, redaction
from shared import tasks as task_queries
from shared.accounts import Credentials, credentials_version, load_credentials
from shared.crypto import decrypt_json
from shared.db import Conn, T, in_transaction
from shared.lookup import Lookups, LookupsBusy, NameTimedOut
from shared.portals import active_profile, portal_address, portal_allowed_origins, portal_problems
from shared.redaction import Redactor
from shared.runtime import Runtime
from shared.sop.errors import StoredVersionRefused
from shared.sop.model import Sop
from shared.sop.patterns import PatternError
from shared.sop.profile import Profile
from shared.sop.store import StoredSop, sop_by_id
from shared.ssrf import UrlRefused, check_portal_url, system_resolver
from shared.tasks import CANCELED_NOTE, TaskStatus
from shared.trajectories import record_step, stored_counts
from worker.agent.interpreter import Outcome, run_sop
from worker.agent.limits import ReadLimits, Trajectory
from worker.agent.review import Review
from worker.browser import BrowserPool, set_downloads
from worker.egress import Origin
from worker.errors import (
    INFRASTRUCTURE_ERRORS,
    TRANSIENT_ERRORS,
    AgentError,
    ClaimLost,
    CredentialsRejected,
    CredentialsRemoved,
    InputTimeout,
    LeftPortal,
    PortalUnavailable,
    ReviewRequested,
    SecretRefused,
    SessionInUse,
    StepFailed,
    TaskCanceled,
    TrajectoryFull,
)
from worker.workspace import task_workspace

log = logging.getLogger(__name__)

_lookups: tuple[int, Lookups] | None = None


def process_lookups(rt: Runtime) -> Lookups:
    """This process's lookups of portal names (shared.lookup), built on first use, like its
    runtime: threads capped by ``LOOKUP_THREADS``, a quarter of them at most for one account."""
    global _lookups
    if _lookups is None or _lookups[0] != os.getpid():
        built = Lookups(system_resolver, max_threads=rt.settings.lookup_threads)
        _lookups = (os.getpid(), built)
    return _lookups[1]


# What is retried inside one attempt: a portal that is down or slow, and a crashed browser
# (the pool starts a fresh one). Everything else ends the task at once with a note.
RETRIED = (*TRANSIENT_ERRORS, WebDriverException)
# What a portal, an SOP or a person can make happen: an outcome with a note, logged at INFO with
# its reason (see _claim_and_run), never a traceback.
EXPECTED = (*RETRIED, AgentError, SoftTimeLimitExceeded, PatternError, StoredVersionRefused)
# What gives the claim up without a status: our infrastructure failing, or the claim lost.
GIVEN_UP: tuple[type[Exception], ...] = (*INFRASTRUCTURE_ERRORS, ClaimLost)
# Not the task's outcome: the claim given up, or the task paused for review.
NOT_AN_OUTCOME: tuple[type[Exception], ...] = (*GIVEN_UP, ReviewRequested)


def _db(rt: Runtime, work: Callable[[Conn], T]) -> T:
    """One transaction, retried while the database is unavailable (for ``DB_RETRY_S``)."""
    return in_transaction(rt.pool, work, retry_s=rt.settings.db_retry_s)


@dataclass
class TaskFile:
    name: str
    path: Path


@dataclass
class DbRecorder:
    """Writes each step (and its screenshot) as the engine reports it, in its own transaction.

    Names and messages go through the task's redactor on the way in, whatever wrote them.
    """

    rt: Runtime
    task_id: int
    account_id: int
    attempt: int
    worker: str
    seq: int = 0
    irreversible_passed: bool = False
    redactor: Redactor = field(default_factory=Redactor)
    # What the task may still record (MAX_TASK_STEPS, MAX_TASK_SCREENSHOTS), shared by this
    # claim's runs: the interpreter counts, and stops or leaves screenshots out, against it.
    trajectory: Trajectory = field(default_factory=Trajectory)

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
    ) -> None:
        self.seq += 1
        # The one place every step of every run passes: its duration by kind.
        metrics.STEP_DURATION.labels(metrics.step_kind_label(kind), status).observe(
            duration_ms / 1000
        )
        _db(
            self.rt,
            lambda conn: record_step(
                conn,
                task_id=self.task_id,
                account_id=self.account_id,
                attempt=self.attempt,
                seq=self.seq,
                name=self.redactor.text(name),
                status=status,
                message=self.redactor.text(message),
                started_at=started_at,
                duration_ms=duration_ms,
                screenshot=screenshot,
            ),
        )

    def checkpoint(self, step_name: str) -> None:
        # Committed before the click: if we die during or after it, no retry submits again.
        # Only while our claim is live: a worker whose lease ran out during a database outage
        # may already have a successor, and must not click at all.
        step_name = self.redactor.text(step_name)
        held = _db(
            self.rt,
            lambda conn: task_queries.record_irreversible(
                conn, self.task_id, step_name, worker=self.worker
            ),
        )
        if not held:
            raise ClaimLost(f"task {self.task_id}: the claim was lost before {step_name!r}")
        self.irreversible_passed = True


@dataclass
class Lease:
    """Extends the claim every heartbeat; notices cancellation and a lost claim."""

    rt: Runtime
    task_id: int
    worker: str
    canceled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Lease:
        # In the task's logging context, so its lines name the task.
        beat = contextvars.copy_context().run
        self._thread = threading.Thread(target=beat, args=(self._beat,), daemon=True, name="lease")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        settings = self.rt.settings
        while not self._stop.wait(settings.task_heartbeat_s):
            try:
                with self.rt.pool.connection() as conn:
                    row = task_queries.extend_lease(
                        conn, self.task_id, self.worker, settings.task_lease_s
                    )
            except Exception as exc:  # survivable: a lease lasts several beats
                log.warning(
                    "lease heartbeat failed for task %s (%s)", self.task_id, type(exc).__name__
                )
                continue
            if row is None:
                self.lost.set()
            elif row["cancel_requested_at"] is not None:
                self.canceled.set()

    def should_stop(self) -> bool:
        """Asked before every step: one read, so a cancel takes effect at the next step, not
        at the next heartbeat (retried through a database outage like every write here)."""
        if not (self.canceled.is_set() or self.lost.is_set()):
            row = _db(
                self.rt, lambda conn: task_queries.cancel_state(conn, self.task_id, self.worker)
            )
            if row is None:
                self.lost.set()
            elif row["cancel_requested_at"] is not None:
                self.canceled.set()
        return self.canceled.is_set() or self.lost.is_set()


def _base_url(rt: Runtime, account_id: int, sop: Sop) -> str | None:
    return _db(
        rt,
        lambda conn: portal_address(
            conn,
            account_id,
            sop.portal,
            sandbox_url=rt.settings.sandbox_url,
            sop_base_url=sop.base_url,
        ),
    )


def _admit(
    rt: Runtime, claimed: dict, portal: str, worker: str
) -> tuple[Profile | None, str | None]:
    """The portal's profile in force when the task starts: the account's newest version, or
    the built-in one (None for a portal registered without a profile). The task records which.

    Then whether it may run now: not while the account's portal is failing (unless it is the
    probe, shared.outages), and not past the profile's ``max_sessions``
    (:func:`shared.tasks.hold_session`). The second value is None, or the note of the wait the
    task was put in instead.
    """

    def read_and_admit(conn: Conn) -> tuple[Profile | None, str | None]:
        stored = active_profile(conn, claimed["account_id"], portal)
        if stored is None:
            return None, None
        if not task_queries.record_profile(
            conn, claimed["id"], portal, stored.version, worker=worker
        ):
            # Taken over, or put back to wait by this very transaction before a lost answer
            # made it run again: this worker must not sign in.
            raise ClaimLost(f"task {claimed['id']}: the claim was lost before it started")
        limit = stored.profile.max_sessions
        waiting = outages.hold_for_outage(conn, claimed, portal, worker=worker)
        if waiting is None:
            waiting = task_queries.hold_session(conn, claimed, portal, limit, worker=worker)
        return stored.profile, waiting

    return _db(rt, read_and_admit)


def _release_portal(
    rt: Runtime, account_id: int, profile: Profile | None, *, answered: bool, portal: str
) -> None:
    """A task let its portal go (it ended, paused for review, or waits for the portal): end
    the account's outage on it if the run got past the sign-in (``answered``), and send the
    tasks that may run now. Best effort: if this fails, the scheduler sends them (a session's
    waiters once none of the account's tasks on the portal runs, an outage's at its next
    probe)."""
    if profile is None and not answered:
        return

    def release(conn: Conn) -> list[int]:
        # (a portal without a profile has an outage too, and no sessions to count)
        woken = outages.portal_answered(conn, account_id, portal) if answered else []
        if profile is None:
            return woken
        return woken + task_queries.wake_session_waiters(
            conn, account_id, profile.portal, profile.max_sessions
        )

    try:
        woken = _db(rt, release)
    except INFRASTRUCTURE_ERRORS:
        log.warning("could not send the tasks waiting for portal %s", portal)
        return
    for task_id in woken:
        task_queries.send_now(rt, task_id)


def _origins(rt: Runtime, account_id: int, portal: str, base_url: str) -> list[Origin]:
    """What the task's browser may reach: the base URL's origin and the declared ones."""
    allow_private = rt.settings.portal_allow_private
    # The sandbox portal is the operator's own: its (loopback) address is always allowed.
    base_private = allow_private or base_url == rt.settings.sandbox_url
    origins = [Origin.of(base_url, allow_private=base_private)]
    declared = _db(rt, lambda conn: portal_allowed_origins(conn, account_id, portal))
    origins += [Origin.of(url, allow_private=allow_private) for url in declared]
    return origins


def _browser_key(rt: Runtime, account_id: int, portal: str) -> tuple[int, str, str | None]:
    """A browser is reused only by one account, for one portal, signed in with the credentials
    stored now: storing new credentials ends the old session."""
    version = _db(rt, lambda conn: credentials_version(conn, account_id, portal))
    return account_id, portal, version


def _write_files(rt: Runtime, task_id: int, folder: Path) -> list[TaskFile]:
    rows = _db(
        rt,
        lambda conn: conn.execute(
            "SELECT id, filename, content FROM task_files WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall(),
    )
    files = []
    for row in rows:
        # A folder per file: the portal sees the client's file name, and equal names can't clash.
        path = folder / str(row["id"]) / row["filename"]
        path.parent.mkdir()
        path.write_bytes(row["content"])
        files.append(TaskFile(row["filename"], path))
    return files


def _code_requester(
    rt: Runtime, task_id: int, worker: str, lease: Lease, recorder: DbRecorder
) -> Callable[[], str]:
    """Blocks until a person posts the MFA code (POST /tasks/{id}/input) or time runs out.

    The wait is not silent: the task's notes say what it waits for and until when, a step in
    its trajectory says so too, and the opt-in ``task.waiting_for_input`` event is written.
    """

    def request_code() -> str:
        timeout_s = rt.settings.input_timeout_s
        started = datetime.now(UTC)
        expires_at = started + timedelta(seconds=timeout_s)
        note = (
            f"Waiting for a one-time code for the portal sign-in: send it with POST "
            f"/tasks/{task_id}/input before {task_queries.iso(expires_at)} (INPUT_TIMEOUT_S), "
            "or the task fails."
        )
        # The step first: whoever sees the task waiting_for_input finds the step that says so.
        recorder.step(
            "Waiting for a one-time code",
            started_at=started,
            duration_ms=0,
            status="ok",
            message=note,
            screenshot=None,
        )
        held = _db(
            rt,
            lambda conn: task_queries.await_input(
                conn, task_id, worker, expires_at=expires_at, note=note
            ),
        )
        if not held:
            raise ClaimLost(f"task {task_id}: the claim was lost before asking for input")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if lease.should_stop():
                raise TaskCanceled("The task was canceled while waiting for input.")
            token = _db(rt, lambda conn: _take_input(conn, task_id, worker))
            if token is not None:
                return str(decrypt_json(rt.fernet, token)["code"])
            time.sleep(0.5)
        raise InputTimeout(f"No one-time code was supplied within {timeout_s:.0f} s.")

    return request_code


def _take_input(conn: Conn, task_id: int, worker: str) -> bytes | None:
    token = task_queries.take_input(conn, task_id)
    if token is not None:
        task_queries.input_received(conn, task_id, worker)
    return token


def _refusal(exc: BaseException, stored: StoredSop | None) -> StoredVersionRefused | None:
    """The stored document this release's rules refuse that ``exc`` shows, or None: one
    refused when it was read, or a pattern RE2 cannot run met while running (only a version
    stored before patterns ran on RE2 has one; which document it is in is not known here)."""
    if isinstance(exc, StoredVersionRefused):
        return exc
    if isinstance(exc, PatternError) and stored is not None:
        sop = stored.sop
        return StoredVersionRefused(
            f"the SOP for {sop.task_type} (version {stored.version}) or the profile of portal"
            f" {sop.portal}",
            f"PUT /sops/{sop.task_type} or PUT /portals/{sop.portal}/profile",
            [{"line": None, "path": "", "message": f"a pattern that cannot run: {exc}"}],
        )
    return None


CANCELED_AFTER_SUBMIT = (
    "Canceled at the client's request after the submit step had run: the payer may have the"
    " submission already. Check the portal before submitting again."
)


def _failure_note(exc: BaseException, stored: StoredSop | None) -> tuple[TaskStatus, str]:
    """The final status and the notes of a run that ``exc`` ended (``stored``: its SOP, when
    it could be read)."""
    if (refused := _refusal(exc, stored)) is not None:
        # Not retried: the same version would be refused again on every attempt.
        return TaskStatus.FAILED, f"{refused.message}, then send the task again."
    assert stored is not None  # only a refusal comes before the SOP was read
    sop = stored.sop
    if isinstance(exc, TaskCanceled):
        return TaskStatus.CANCELED, CANCELED_NOTE
    if isinstance(exc, LeftPortal):
        return TaskStatus.FAILED, f"The SOP tried to leave its portal and was stopped: {exc}."
    if isinstance(exc, CredentialsRejected):
        return TaskStatus.FAILED, (
            f"The portal '{sop.portal}' rejected the stored credentials. Not retried, so the "
            f"account is not locked out; update them with PUT /credentials/{sop.portal}."
        )
    if isinstance(exc, CredentialsRemoved):
        return TaskStatus.FAILED, (
            f"The credentials for portal '{sop.portal}' were deleted while the task ran, and it"
            f" had to sign in again; store them with PUT /credentials/{sop.portal}, then send"
            " the task again."
        )
    if isinstance(exc, SecretRefused):
        where = f"step {exc.step_index} ({exc.step_name})" if exc.step_name else "a step"
        return TaskStatus.FAILED, f"Refused at {where}: {exc}."
    if isinstance(exc, StepFailed):
        where = f"step {exc.step_index} ({exc.step_name})" if exc.step_name else "a step"
        looking = f" It was looking for {exc.looking_for}." if exc.looking_for else ""
        return TaskStatus.FAILED, f"The SOP could not proceed at {where}: {exc}.{looking}"
    if isinstance(exc, PortalUnavailable):
        return TaskStatus.FAILED, f"Portal error, still failing after retries: {exc}"
    if isinstance(exc, InputTimeout):
        return TaskStatus.FAILED, str(exc)
    if isinstance(exc, TrajectoryFull):
        return TaskStatus.FAILED, f"The SOP did not finish: it was {exc}."
    if isinstance(exc, SoftTimeLimitExceeded):
        return TaskStatus.FAILED, "The task ran past its time limit and was stopped."
    if isinstance(exc, WebDriverException):
        # (chromedriver adds its version and a stack trace on lines of their own)
        detail = (exc.msg or type(exc).__name__).splitlines()[0]
        return TaskStatus.FAILED, f"The browser failed repeatedly: {detail}"
    return TaskStatus.FAILED, f"The agent hit an internal error ({type(exc).__name__})."


def _drive(
    rt: Runtime,
    browsers: BrowserPool,
    claimed: dict,
    sop: Sop,
    credentials: Credentials,
    base_url: str,
    recorder: DbRecorder,
    lease: Lease,
    worker: str,
    profile: Profile | None,
) -> Outcome:
    """Run the SOP, retrying transient failures with backoff; after a submit, only verify."""
    sensitive = _sensitive_inputs(rt, claimed)
    origins = _origins(rt, claimed["account_id"], sop.portal, base_url)
    key = _browser_key(rt, claimed["account_id"], sop.portal)
    with task_workspace(rt.settings.workspace_dir, claimed["id"]) as folder:
        (folder / "files").mkdir(mode=0o700)
        (folder / "downloads").mkdir(mode=0o700)
        files = _write_files(rt, claimed["id"], folder / "files")
        retrying = Retrying(
            retry=retry_if_exception_type(RETRIED),
            # (a cancel or a lost claim ends the retries: no attempt after it)
            stop=stop_after_attempt(max(1, rt.settings.portal_retry_attempts)) | _Stopped(lease),
            wait=wait_exponential(multiplier=rt.settings.portal_retry_base_s, max=60),
            reraise=True,
        )
        renew = _stored_login(rt, claimed["account_id"], sop.portal)
        first = [credentials]  # read with the claim; a later attempt reads what is stored then

        def attempt() -> Outcome:
            login = first.pop() if first else renew()
            with browsers.session(key) as driver:
                set_downloads(driver, folder / "downloads")
                return run_sop(
                    driver,
                    sop,
                    claimed["inputs"],
                    base_url=base_url,
                    credentials=login,
                    renew_credentials=renew,
                    files=files,
                    recorder=recorder,
                    verify_only=recorder.irreversible_passed,
                    should_stop=lease.should_stop,
                    request_code=_code_requester(rt, claimed["id"], worker, lease, recorder),
                    screenshot_every_step=rt.settings.screenshots == "every_step",
                    sensitive=sensitive,
                    redactor=recorder.redactor,
                    allowed_origins=origins,
                    review=_review(claimed),
                    profile=profile,
                    limits=ReadLimits.of(rt.settings),
                    trajectory=recorder.trajectory,
                )

        return retrying(attempt)


class _Stopped(stop_base):
    """Retry no more once the task is canceled or no longer this worker's."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.lease.should_stop()


def _stored_login(rt: Runtime, account_id: int, portal: str) -> Callable[[], Credentials]:
    """What reads the portal's login as stored now, for a sign-in after the first: the account
    may have rotated it (the old password would be refused, and count towards a lockout) or
    deleted it (CredentialsRemoved) since the task was claimed."""

    def stored() -> Credentials:
        login = _db(rt, lambda conn: load_credentials(conn, rt.fernet, account_id, portal))
        if login is None:
            raise CredentialsRemoved(f"the credentials for portal '{portal}' were deleted")
        return login

    return stored


def _review(claimed: dict) -> Review:
    """What the run needs of the task's review: required by the account, approved already."""
    return Review(
        required=bool(claimed.get("review_required")),
        approved=claimed.get("review_decision") == "approved",
        reviewer=claimed.get("reviewed_by"),
        note=claimed.get("review_note"),
    )


def run_task(
    rt: Runtime, task_id: int, *, browsers: BrowserPool, lookups: Lookups | None = None
) -> TaskStatus | None:
    """Claim the task and see it to a final status, which it returns. A no-op (None) if it is
    not claimable. ``lookups``: the process's (:func:`process_lookups`) unless given.

    When the database stays unavailable past ``DB_RETRY_S`` (or the claim was lost meanwhile),
    this gives the task up without a status (None): the lease expires and the scheduler
    retries it.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with logs.bound(task_id=task_id):
        try:
            return _claim_and_run(rt, task_id, worker, browsers, lookups or process_lookups(rt))
        except GIVEN_UP as exc:
            log.warning(
                "task %s: giving the claim up (%s: %s); the scheduler retries it when the lease"
                " expires",
                task_id,
                type(exc).__name__,
                exc,
            )
            return None


def _claim_and_run(
    rt: Runtime, task_id: int, worker: str, browsers: BrowserPool, lookups: Lookups
) -> TaskStatus | None:
    lease_s = rt.settings.task_lease_s
    # A claim is safe to retry: if a lost answer hid its commit, the retry finds the task
    # running, skips it, and the lease it holds expires into a retry.
    claimed = _db(rt, lambda conn: task_queries.claim_task(conn, task_id, worker, lease_s))
    if claimed is None:
        # A second delivery (the scheduler re-sent a message that waited long in the queue), or
        # a task canceled or removed meanwhile: its line still names the task's account.
        seen = _db(rt, lambda conn: task_queries.get_task(conn, task_id))
        with logs.bound(account_id=seen["account_id"] if seen else None):
            log.info(
                "task %s is not claimable (%s); skipping",
                task_id,
                seen["status"] if seen else "gone",
            )
        return None
    if claimed["yielded"] is not None:
        _yielded(rt, claimed, task_id)
        task_id = claimed["id"]
        logs.bind(task_id=task_id)  # undone with the named task's id (run_task)
    started = time.monotonic()
    logs.bind(account_id=claimed["account_id"])  # undone with the task_id (run_task)
    try:
        stored, credentials = _db(rt, lambda conn: _load_sop_and_credentials(rt, conn, claimed))
        profile, waiting = _admit(rt, claimed, stored.sop.portal, worker)
    except StoredVersionRefused as refused:
        # Its SOP or its portal's profile is a version this release refuses: the task fails
        # now, once, saying which and what to do (a retry would meet the same version).
        status, notes = _failure_note(refused, None)
        return _finish(rt, claimed, worker, status, notes, None, started)
    if waiting is not None:
        log.info("task %s does not start: %s", task_id, waiting)
        return None
    if claimed["attempts"] == 1:
        wait_s = max(0.0, claimed["waited_s"])
        metrics.TASK_WAIT.labels(metrics.type_label(claimed["type"])).observe(wait_s)
    # Every secret of the run, for every writer: trajectory, notes, result and logs.
    redactor = _redactor(rt, claimed, credentials)
    recorder = DbRecorder(
        rt,
        task_id,
        claimed["account_id"],
        claimed["attempts"],
        worker,
        irreversible_passed=claimed["irreversible_at"] is not None,
        redactor=redactor,
        trajectory=_trajectory(rt, task_id),
    )
    base_url = _base_url(rt, claimed["account_id"], stored.sop)
    with redaction.active(redactor), Lease(rt, task_id, worker) as lease:
        try:
            ending = _run_claimed(
                rt,
                browsers,
                claimed,
                stored,
                credentials,
                base_url,
                recorder,
                lease,
                worker,
                profile,
                lookups,
            )
        except ReviewRequested as pause:
            _pause_for_review(rt, task_id, worker, redactor.text(pause.step_name))
            _release_portal(
                rt, claimed["account_id"], profile, answered=True, portal=stored.sop.portal
            )
            return None
        except LookupsBusy as busy:
            # Ours, not the portal's: the task goes back in line, its attempt not counted, and
            # the scheduler sends it again after PENDING_REQUEUE_AFTER_S.
            log.warning("task %s goes back in line: %s", task_id, busy)
            if not _db(rt, lambda conn: task_queries.give_back(conn, task_id, worker)):
                _end_canceled(rt, task_id, worker)  # canceled meanwhile (or no longer ours)
            _release_portal(
                rt, claimed["account_id"], profile, answered=False, portal=stored.sop.portal
            )
            return None
    if ending.portal_down is not None and _wait_for_portal(
        rt, claimed, stored.sop.portal, ending.portal_down, redactor, worker
    ):
        _release_portal(
            rt, claimed["account_id"], profile, answered=False, portal=stored.sop.portal
        )
        return None
    status, notes, result = (
        ending.status,
        redactor.text(ending.notes),
        redactor.value(ending.result),
    )
    if _finish(rt, claimed, worker, status, notes, result, started) is None:
        return None
    _release_portal(
        rt,
        claimed["account_id"],
        profile,
        answered=ending.portal_answered,
        portal=stored.sop.portal,
    )
    return status


def _trajectory(rt: Runtime, task_id: int) -> Trajectory:
    """The task's trajectory bounds, counting what its earlier claims stored: a task run again
    (after a review, a portal outage, a worker that died) does not start its count afresh."""
    steps, screenshots = _db(rt, lambda conn: stored_counts(conn, task_id))
    return Trajectory.of(rt.settings, steps=steps, screenshots=screenshots)


def _finish(
    rt: Runtime,
    claimed: dict,
    worker: str,
    status: TaskStatus,
    notes: str,
    result: dict | None,
    started: float,
) -> TaskStatus | None:
    """Give the task its final status; the status, or None if another worker took it over."""
    # The status and its webhook message, in one transaction, retried as one.
    finished = _db(
        rt,
        lambda conn: task_queries.finish_task(
            conn, claimed["id"], status, notes, result=result, worker=worker
        ),
    )
    if not finished:
        log.warning("task %s was taken over before it finished here", claimed["id"])
        return None
    _report_finish(claimed, status, notes, time.monotonic() - started)
    return status


def _wait_for_portal(
    rt: Runtime,
    claimed: dict,
    portal: str,
    down: PortalUnavailable,
    redactor: Redactor,
    worker: str,
) -> bool:
    """The portal failed before the task's own steps, after our retries (``down``, or it
    refused the user signed in elsewhere): the task waits for it to come back (shared.outages),
    unless it has waited ``PORTAL_OUTAGE_WAIT_S`` already (False: it fails as a portal error)."""
    wait_s = rt.settings.portal_outage_wait_s
    if wait_s <= 0:
        return False
    error = redactor.text(str(down))
    cause = (
        outages.OutageCause.SIGNED_IN_ELSEWHERE
        if isinstance(down, SessionInUse)
        else outages.OutageCause.DOWN
    )
    note = _db(
        rt,
        lambda conn: outages.portal_failed(
            conn,
            claimed["id"],
            claimed["account_id"],
            portal,
            error,
            worker=worker,
            wait_s=wait_s,
            probe_after_s=rt.settings.portal_probe_after_s,
            cause=cause,
        ),
    )
    if note is not None:
        log.info("task %s waits for its portal: %s", claimed["id"], note)
    return note is not None


def _yielded(rt: Runtime, claimed: dict, named: int) -> None:
    """The named task gave its turn to another account's (fair share, :func:`claim_task`):
    send its message again, to the back of the queue."""
    log.info(
        "task %s yields to task %s of account %s, which had fewer tasks running for its share;"
        " it is queued again",
        named,
        claimed["id"],
        claimed["account_id"],
    )
    task_queries.send_now(rt, named)


def _report_finish(claimed: dict, status: TaskStatus, notes: str, run_s: float) -> None:
    """The run's duration, and one INFO line with the reason: every outcome of the portal or
    the SOP is expected (our own faults were logged as errors where they happened)."""
    metrics.TASK_DURATION.labels(metrics.type_label(claimed["type"]), str(status)).observe(run_s)
    reason = _without_task_data(claimed, notes)
    log.info(
        "task %s finished %s: %s",
        claimed["id"],
        status,
        reason,
        extra={"status": str(status), "reason": reason, "task_type": claimed["type"]},
    )


def _without_task_data(claimed: dict, text: str) -> str:
    """``text`` with the task's own values (member ids, names, dates) masked: a log line keeps
    why a task ended, not whom it was about. The notes themselves are the client's to read."""
    values = _leaves(claimed["inputs"])
    # A name may come back in another order ("Doe, Jane"): its words too. Shorter ones would
    # mask parts of ordinary words.
    parts = [part for value in values for part in value.split() if len(part) >= 4]
    return Redactor(value for value in [*values, *parts] if len(value) >= 4).text(text)


def _leaves(value: object) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None else [str(value)]


def _pause_for_review(rt: Runtime, task_id: int, worker: str, step_name: str) -> None:
    """Release the task (and, by returning, its browser and this worker's slot) until a person
    approves or rejects it with POST /tasks/{id}/review, or its deadline passes."""
    note = (
        f"Waiting for review before {step_name!r}: approve or reject it with POST "
        f"/tasks/{task_id}/review. Approved, the agent signs in again, fills the form again and "
        "goes on; rejected, or undecided at review.expires_at, the task ends"
        " completed_with_issues and nothing is submitted."
    )
    paused = _db(
        rt,
        lambda conn: task_queries.await_review(conn, task_id, worker, step=step_name, note=note),
    )
    if paused:
        return
    # Still ours, so a cancel came after the engine's last check: it ends as the 202 said.
    if not _end_canceled(rt, task_id, worker):
        log.warning("task %s was taken over before it paused for review here", task_id)


def _end_canceled(rt: Runtime, task_id: int, worker: str) -> bool:
    """End this worker's task ``canceled``, a cancel having been asked since its last step
    began; False if the task is no longer this worker's (then nothing changes)."""
    return bool(
        _db(
            rt,
            lambda conn: task_queries.finish_task(
                conn, task_id, TaskStatus.CANCELED, CANCELED_NOTE, worker=worker
            ),
        )
    )


def _load_sop_and_credentials(
    rt: Runtime, conn: Conn, claimed: dict
) -> tuple[StoredSop, Credentials | None]:
    stored = sop_by_id(conn, claimed["sop_id"])
    return stored, load_credentials(conn, rt.fernet, claimed["account_id"], stored.sop.portal)


def _redactor(rt: Runtime, claimed: dict, credentials: Credentials | None) -> Redactor:
    """A redactor that knows the stored secrets and the task's sensitive inputs."""
    stored = (credentials.password, credentials.totp_secret) if credentials else ()
    return Redactor([*stored, *_sensitive_inputs(rt, claimed).values()])


def _sensitive_inputs(rt: Runtime, claimed: dict) -> dict[str, str]:
    """The task's sensitive inputs by name, decrypted (kept nowhere else in clear)."""
    token = claimed.get("secret_inputs")
    return decrypt_json(rt.fernet, token) if token is not None else {}


@dataclass(frozen=True)
class Ending:
    """How a run ended: the final status it gives the task, with notes and result."""

    status: TaskStatus
    notes: str
    result: dict | None = None
    # The run got past the portal's sign-in (which ends the account's outage on it).
    portal_answered: bool = False
    # The portal failed before the task's own steps: the task may wait for it instead.
    portal_down: PortalUnavailable | None = None


def _run_claimed(
    rt: Runtime,
    browsers: BrowserPool,
    claimed: dict,
    stored: StoredSop,
    credentials: Credentials | None,
    base_url: str | None,
    recorder: DbRecorder,
    lease: Lease,
    worker: str,
    profile: Profile | None,
    lookups: Lookups,
) -> Ending:
    sop = stored.sop
    problems = portal_problems(
        sop.portal, address=base_url, has_credentials=credentials is not None
    )
    if problems:
        return Ending(TaskStatus.FAILED, f"{problems[0][0].upper()}{problems[0][1:]}.")
    assert base_url is not None and credentials is not None  # no problems: both are there
    if base_url != rt.settings.sandbox_url:
        # Within LOOKUP_TIMEOUT_S: a portal whose DNS hangs must not hold the worker. A name
        # that has not answered by then is the portal unreachable (the customer's side, as when
        # the browser cannot reach it); every lookup thread taken is ours (LookupsBusy, raised).
        deadline = time.monotonic() + rt.settings.lookup_timeout_s
        try:
            check_portal_url(
                base_url,
                allow_private=rt.settings.portal_allow_private,
                resolver=lookups.until(deadline, owner=claimed["account_id"]),
            )
        except NameTimedOut as exc:
            unreachable = PortalUnavailable(f"the portal could not be reached ({base_url}: {exc})")
            unreachable.at_entry = True
            return Ending(
                TaskStatus.FAILED, f"Portal error: {unreachable}.", portal_down=unreachable
            )
        except UrlRefused as exc:
            return Ending(TaskStatus.FAILED, f"The portal address {base_url} is refused: {exc}.")
    try:
        outcome = _drive(
            rt, browsers, claimed, sop, credentials, base_url, recorder, lease, worker, profile
        )
    except NOT_AN_OUTCOME:
        # Ours, not the task's: no status; the claim is given up (see run_task), or the task
        # pauses for review (see _claim_and_run).
        raise
    except Exception as exc:  # every failure becomes a final status with a note, never a hang
        status, notes = _failure_note(exc, stored)
        if isinstance(exc, TaskCanceled) and recorder.irreversible_passed:
            # Too late to undo: the submit step ran (in this run or an earlier one), so the
            # payer may have what it sent. "canceled" would tell the client nothing was done.
            status, notes = TaskStatus.COMPLETED_WITH_ISSUES, CANCELED_AFTER_SUBMIT
        elif (
            status is TaskStatus.FAILED
            and not recorder.irreversible_passed
            and lease.should_stop()
            and not lease.lost.is_set()
        ):
            # The client canceled while the run was failing (its portal's retries, a step that
            # failed then): it ends as the cancel's 202 said, not as a failure to send again.
            return Ending(TaskStatus.CANCELED, CANCELED_NOTE)
        if not isinstance(exc, EXPECTED):
            # A fault of ours, not an outcome: the traceback is what a developer needs.
            log.exception("task %s: internal error", claimed["id"])
        down = exc if isinstance(exc, PortalUnavailable) and exc.at_entry else None
        if status is TaskStatus.FAILED:
            notes = recorder.trajectory.told(notes)  # the screenshots it did not store, if any
        return Ending(
            status,
            notes,
            # Past the sign-in: whatever the portal or the SOP did then, the portal answered.
            portal_answered=isinstance(exc, AgentError)
            and not isinstance(exc, TaskCanceled)
            and down is None,
            portal_down=down,
        )
    return Ending(TaskStatus(outcome.status), outcome.notes, outcome.result, portal_answered=True)
