"""A typed Python client for the Understudy API."""

from __future__ import annotations

from understudy_client.client import FINAL_STATUSES, OPERATIONS, Page, Task, Understudy
from understudy_client.errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    UnderstudyError,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
)
from understudy_client.webhooks import verify_webhook

__all__ = [
    "FINAL_STATUSES",
    "OPERATIONS",
    "ApiConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "Task",
    "UnderstudyError",
    "Understudy",
    "ValidationError",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
