"""The agent's exception hierarchy: what went wrong while driving a portal, and whether to retry."""

from __future__ import annotations

import kombu.exceptions
import redis
from selenium.common.exceptions import WebDriverException

from shared.db import DB_UNAVAILABLE


class AgentError(Exception):
    """Base of every error the agent raises while running an SOP."""

    transient = False


class PortalUnavailable(AgentError):
    """The portal is down or erroring (5xx page, known error text, page load timeout).

    ``at_entry``: it failed before the task's own steps, signing in or in the profile's prelude,
    which every task on the portal needs: the portal is down, not one of its pages
    (shared.outages).
    """

    transient = True
    at_entry = False


class SessionInUse(PortalUnavailable):
    """The portal refused the sign-in because the user is signed in elsewhere (a person, or a
    browser that did not sign out), as a sign of the profile's ``sign_in.in_use`` shows. Not
    the credentials' fault: retried, then waited out like a portal that is down, until the
    user's other session ends."""


class CredentialsRejected(AgentError):
    """The portal refused the username/password or the one-time code."""


class CredentialsRemoved(AgentError):
    """The account deleted the portal's credentials while the task ran, and the run had to sign
    in again (its session ended, or an attempt after a portal error)."""


class StepFailed(AgentError):
    """An SOP step could not be carried out (element not found, explicit `fail`, ...)."""

    def __init__(
        self,
        message: str,
        *,
        step_index: str = "",
        step_name: str = "",
        looking_for: str | None = None,
    ) -> None:
        self.step_index = step_index
        self.step_name = step_name
        self.looking_for = looking_for
        super().__init__(message)


class SecretRefused(StepFailed):
    """An SOP tried to read a secret back (a password field, a field a secret was typed into),
    or to type one where it could be read. Never skipped, even in an optional step."""


class LeftPortal(AgentError):
    """The SOP or a page tried to reach something outside the task's portal origins."""


class InputsInvalid(AgentError):
    """The task's inputs do not satisfy the SOP (missing or malformed fields)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


class InputTimeout(AgentError):
    """Nobody supplied the input the agent asked for (e.g. an MFA code) in time."""


class TrajectoryFull(AgentError):
    """The task recorded the most steps one task may (MAX_TASK_STEPS): it stops there, failed.
    Never retried (the same SOP would loop again), never skipped by an optional step."""


class TaskCanceled(AgentError):
    """The task was canceled while the agent was running it."""


class BrowserHung(WebDriverException):
    """The browser stopped answering (a script on the portal's page that never yields holds
    the page, and chromedriver with it): it was stopped, and the task is retried in a fresh
    one like after any browser failure."""


# Retried with a bound by the caller; everything else fails the task at once.
TRANSIENT_ERRORS: tuple[type[AgentError], ...] = (PortalUnavailable,)


class ClaimLost(Exception):
    """This worker no longer holds the task (its lease ran out, say during a database outage).

    Not an AgentError: it is nobody's outcome. The worker stops without writing a status."""


class ReviewRequested(Exception):
    """The SOP reached a review point: the task pauses for a person's decision.

    Not an AgentError: it is nobody's outcome. The worker releases the task (``pending_review``)
    and its browser; an approval runs the task again, past the review point."""

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        super().__init__(f"waiting for review before {step_name!r}")


# Our own infrastructure failing: the database restarting or failing over, the broker
# unreachable. Never a task's outcome: writes are retried, then the claim is given up.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    *DB_UNAVAILABLE,
    kombu.exceptions.OperationalError,
    redis.RedisError,
)


class TaskEndedFailed(Exception):
    """Raised by the Celery task when the task it ran ended ``failed``, so Celery records a
    FAILURE (Flower shows it): an expected outcome, logged at INFO without a traceback, never
    retried. The task's status and webhook are written before it is raised."""
