"""Why a delivery attempt failed before any HTTP status came back.

Each class carries the ``error_class`` recorded on the attempt row. All of them are transient: the
message is retried on its schedule until the budget runs out.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """An attempt that got no HTTP response."""

    error_class = "error"


class AddressRefused(DeliveryError):
    """The URL's host resolved to an address the SSRF rules forbid; nothing was sent."""

    error_class = "ssrf_refused"


class DeliveryTimeout(DeliveryError):
    """No response within webhook_timeout_s."""

    error_class = "timeout"


class ConnectionFailed(DeliveryError):
    """The connection could not be made or broke (refused, reset, DNS failure)."""

    error_class = "connection"


class LookupTimedOut(ConnectionFailed):
    """The receiver's name did not resolve within the attempt's deadline; nothing was sent."""


class TlsFailed(DeliveryError):
    """The TLS handshake or certificate check failed."""

    error_class = "tls"
