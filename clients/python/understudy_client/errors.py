"""The client's exceptions: one per kind of failure, each carrying the API's error code."""

from __future__ import annotations

from typing import Any


class UnderstudyError(Exception):
    """An error answer of the API: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class BadRequestError(UnderstudyError):
    """400: the request could not be read."""


class AuthenticationError(UnderstudyError):
    """401: no API key, an unknown one or a revoked one."""


class NotFoundError(UnderstudyError):
    """404: no such resource for this account."""


class ConflictError(UnderstudyError):
    """409: the resource's state does not allow it (a finished task, a reused key...)."""


class PayloadTooLargeError(UnderstudyError):
    """413: a body or a file over the server's limit."""


class ValidationError(UnderstudyError):
    """422: ``details`` lists every problem as ``{"field", "message"}``."""


class RateLimitedError(UnderstudyError):
    """429, after the client's retries ran out."""


class ServiceUnavailableError(UnderstudyError):
    """503, after the client's retries ran out."""


class ApiConnectionError(UnderstudyError):
    """The server could not be reached, or its answer was lost (after the client's retries).

    ``maybe_applied`` is True when the request was sent, so the server may have carried it out:
    a request that is not safe to repeat (a cancel, a one-time code, a secret's rotation) is
    then not sent again, and this error says so."""

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(0, "connection_error", message)
        self.maybe_applied = maybe_applied


class WaitTimeout(UnderstudyError):
    """``wait`` gave up before the task reached a final status (``wait_batch``: before every
    task of the batch did; ``task`` is then the batch)."""

    def __init__(self, task: dict[str, Any], timeout: float) -> None:
        if "status" in task:
            where = f"task {task['id']} still {task['status']}"
        else:
            where = f"batch {task['id']} still has {task['unfinished']} unfinished tasks"
        super().__init__(0, "wait_timeout", f"{where} after {timeout} s")
        self.task = task


class WebhookVerificationError(Exception):
    """A webhook delivery whose signature or timestamp does not verify."""


_BY_STATUS: dict[int, type[UnderstudyError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_for(status: int, body: Any) -> UnderstudyError:
    """The exception for an error answer, whatever its body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "http_error", "message": f"HTTP {status}", "details": body}
    cls = _BY_STATUS.get(status, UnderstudyError)
    return cls(status, str(error.get("code")), str(error.get("message")), error.get("details"))
