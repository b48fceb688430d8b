"""The HTTP client for deliveries: SSRF-checked, pinned to the checked address, no redirects.

requests resolves the host again when it connects, so a name that resolved to a public address
for the check could resolve to 127.0.0.1 for the connection (DNS rebinding). We resolve once,
check every address, and open the connection to the address we checked, while the Host header,
TLS SNI and certificate check still use the hostname. Connection pools are keyed by that address,
so keep-alive never carries a request to an address that was not checked for it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    SSLError,
    TimeoutError,
)

from dispatcher.errors import (
    AddressRefused,
    ConnectionFailed,
    DeliveryError,
    DeliveryTimeout,
    TlsFailed,
)
from shared.ssrf import Resolver, UrlRefused, resolve_checked, split_url, system_resolver

RESPONSE_PREFIX_BYTES = 2048
# Read at most this much of a response body; a longer one is cut off and its connection closed.
_DRAIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body_prefix: str


class Transport:
    """Thread-safe; one per process. Holds a bounded LRU of keep-alive pools."""

    def __init__(
        self,
        *,
        max_pools: int = 256,
        pool_size: int = 8,
        ca_certs: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()
        self._max_pools = max_pools
        self._pool_size = pool_size
        self._ca_certs = ca_certs or certifi.where()
        self._resolver = resolver

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        allow_private: bool,
    ) -> Response:
        """POST once. Any status is a Response; no response at all is a DeliveryError."""
        path, pool, host_header = self._target(url, allow_private)
        try:
            raw = pool.urlopen(
                "POST",
                path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(total=timeout_s),
                preload_content=False,
                assert_same_host=False,
            )
        except (HTTPError, OSError) as exc:
            raise _classify(exc) from exc
        try:
            prefix = _read_prefix(raw)
        except (HTTPError, OSError) as exc:
            raise _classify(exc) from exc
        return Response(raw.status, dict(raw.headers), _storable_text(prefix))

    def _target(self, url: str, allow_private: bool) -> tuple[str, urllib3.HTTPConnectionPool, str]:
        try:
            scheme, host, port = split_url(url)
            address = resolve_checked(
                host, port, allow_private=allow_private, resolver=self._resolver
            )
        except UrlRefused as exc:
            raise AddressRefused(str(exc)) from exc
        parts = urllib3.util.parse_url(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if scheme == "https" else 80
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default_port else f"{shown}:{port}"
        return path, self._pool(scheme, address, port, host), host_header

    def _pool(self, scheme: str, address: str, port: int, host: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, address, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._new_pool(scheme, address, port, host)
            self._pools[key] = pool
            if len(self._pools) > self._max_pools:
                _key, evicted = self._pools.popitem(last=False)
                evicted.close()
            return pool

    def _new_pool(
        self, scheme: str, address: str, port: int, host: str
    ) -> urllib3.HTTPConnectionPool:
        if scheme == "http":
            return urllib3.HTTPConnectionPool(
                address, port, maxsize=self._pool_size, block=False, retries=False
            )
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            maxsize=self._pool_size,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self._ca_certs,
            server_hostname=host,  # SNI for the name, not the address
            assert_hostname=host,  # the certificate must be for the name
        )

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _read_prefix(raw: urllib3.BaseHTTPResponse) -> bytes:
    """The first bytes of the body, kept; the rest read up to a bound so the connection can be
    reused, or the connection closed if the body is longer."""
    kept = raw.read(RESPONSE_PREFIX_BYTES)
    drained = len(kept)
    while drained < _DRAIN_BYTES:
        chunk = raw.read(16 * 1024)
        if not chunk:
            raw.release_conn()
            return kept
        drained += len(chunk)
    raw.close()
    return kept


def _storable_text(data: bytes) -> str:
    """The receiver's bytes as text PostgreSQL stores: invalid UTF-8 and NUL, which a text
    column refuses, become U+FFFD."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _classify(exc: HTTPError | OSError) -> DeliveryError:
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, so it is checked first.
    if isinstance(reason, NewConnectionError | ProtocolError):
        return ConnectionFailed(str(reason))
    if isinstance(reason, TimeoutError | socket.timeout):
        return DeliveryTimeout(f"no response within the timeout ({reason})")
    if isinstance(reason, SSLError | ssl.SSLError):
        return TlsFailed(str(reason))
    return ConnectionFailed(str(reason))
