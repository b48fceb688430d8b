"""The HTTP client for deliveries: SSRF-checked, pinned to the checked address, no redirects.

requests resolves the host again when it connects, so a name that resolved to a public address
for the check could resolve to 127.0.0.1 for the connection (DNS rebinding). We resolve once,
check every address, and open the connection to the address we checked, while the Host header,
TLS SNI and certificate check still use the hostname. Connection pools are keyed by that address,
so keep-alive never carries a request to an address that was not checked for it.

The timeout bounds the whole attempt, from the lookup of the host's name (shared.lookup) to
the end of the response, not each read: a receiver that trickles its headers or body a byte at a
time, each read well within the timeout, is cut off at the deadline by a watchdog thread that
shuts the attempt's socket down. (A TLS handshake is one read with its own deadline.)
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
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
    LookupTimedOut,
    TlsFailed,
)
from shared.lookup import Lookups, NameTimedOut
from shared.settings import Settings
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
        lookup_threads: int = Settings.lookup_threads,
    ) -> None:
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()
        self._max_pools = max_pools
        self._pool_size = pool_size
        self._ca_certs = ca_certs or certifi.where()
        self._lookups = Lookups(resolver, max_threads=lookup_threads)

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
        deadline = time.monotonic() + timeout_s
        path, pool, host_header = self._target(url, allow_private, deadline)
        watch = _watchdog.watch(deadline)
        _current.watch = watch
        try:
            raw = pool.urlopen(
                "POST",
                path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(total=max(deadline - time.monotonic(), 0.001)),
                preload_content=False,
                assert_same_host=False,
            )
            prefix = _read_prefix(raw, watch)
        except (HTTPError, OSError) as exc:
            raise _timed_out(timeout_s) if watch.expired else _classify(exc) from exc
        finally:
            _current.watch = None
            watch.finish()
        if watch.expired:  # a body read to the end of a connection we shut down
            raise _timed_out(timeout_s)
        return Response(raw.status, dict(raw.headers), _storable_text(prefix))

    def _target(
        self, url: str, allow_private: bool, deadline: float
    ) -> tuple[str, urllib3.HTTPConnectionPool, str]:
        try:
            scheme, host, port = split_url(url)
            address = resolve_checked(
                host, port, allow_private=allow_private, resolver=self._lookups.until(deadline)
            )
            host = _ascii_name(host)
        except NameTimedOut as exc:  # the receiver's DNS, not our rules: retried as any failure
            raise LookupTimedOut(str(exc)) from exc
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
            return _HTTPPool(address, port, maxsize=self._pool_size, block=False, retries=False)
        return _HTTPSPool(
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


def _ascii_name(host: str) -> str:
    """The host as DNS, the Host header, TLS SNI and the certificate know it: an internationalized
    name in its IDNA form (``xn--``), as the resolver looked it up. A header is Latin-1 at best."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UrlRefused(f"the host {host!r} is not a valid name") from exc


def _read_prefix(raw: urllib3.BaseHTTPResponse, watch: _Watch) -> bytes:
    """The first bytes of the body, kept; the rest read up to a bound so the connection can be
    reused, or the connection closed if the body is longer (or was cut off at the deadline)."""
    kept = raw.read(RESPONSE_PREFIX_BYTES)
    drained = len(kept)
    while drained < _DRAIN_BYTES:
        chunk = raw.read(16 * 1024)
        if not chunk:
            if watch.expired:
                raw.close()
            else:
                raw.release_conn()
            return kept
        drained += len(chunk)
    raw.close()
    return kept


def _timed_out(timeout_s: float) -> DeliveryTimeout:
    return DeliveryTimeout(f"no complete response within the timeout ({timeout_s:g} s)")


# --- The deadline of an attempt ----------------------------------------------------------------


class _Watch:
    """One attempt's deadline and the sockets it is using."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        """The deadline passed: shut down the attempt's sockets, unless it finished in time."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """The attempt is over: its sockets, kept alive in the pool, are not ours to touch."""
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    """Wake any thread blocked reading ``sock``; the connection is dead from here on. The plain
    socket's shutdown, which leaves a TLS socket's state to the thread using it."""
    # OSError: closed already, or detached by the TLS wrapper (then the TLS socket is watched)
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_TICK_S = 0.1


class _Watchdog:
    """One thread for the process that expires each attempt at its deadline."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        watch = _Watch(deadline)
        with self._changed:
            heapq.heappush(self._due, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webhook-deadlines", daemon=True
                )
                self._thread.start()
            if self._due[0][2] is watch:  # it is due first: the thread sleeps until then
                self._changed.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    # At most one wake a tick: a busy dispatcher's hundreds of attempts a second,
                    # nearly all finished in time (their entries left to lapse), cost a few
                    # wakes a second, not one each; a deadline is kept to within the tick.
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(None if wait is None else max(wait, _TICK_S))
                now = time.monotonic()
                due = []
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due)[2])
            for watch in due:
                watch.expire()


_watchdog = _Watchdog()
# The attempt this thread is making, for the connections it opens or reuses to join.
_current = threading.local()


def _watched(sock: socket.socket | None) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)


class _FinalResponse(http.client.HTTPResponse):
    """Reads past every interim (1xx) response to the final one, as RFC 9110 asks of a client;
    http.client reads past 100 Continue only. 101 is final: the connection is no longer HTTP.
    The attempt's deadline bounds a receiver that sends interim responses without end."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        if 100 < status < 200 and status != 101:
            return version, 100, reason  # http.client skips its headers and reads on
        return version, status, reason


class _Watched(HTTPConnection):
    """A connection whose sockets join the attempt of the thread using it, and which reads
    past interim responses."""

    response_class = _FinalResponse

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watched(sock)
        return sock

    def request(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        _watched(self.sock)  # a kept-alive connection's
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Watched


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


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
