"""The agent browser's only way out: a filtering forward proxy, one per browser.

Chromium is started with ``--proxy-server`` pointing here and ``--proxy-bypass-list=<-loopback>``
so that every request, loopback included, comes through this proxy. It lets a request through only
to one of the current task's origins (the portal's base URL plus the origins the account declared
for that portal), checks every address the host resolves to with the SSRF policy of
:mod:`shared.ssrf`, and connects to the address it checked, so a second DNS answer cannot swap in
another host (DNS rebinding). HTTPS and WebSockets arrive as ``CONNECT host:port`` and are
tunnelled only to an allowed host and port. Everything else is answered 403 and recorded, so the
runner can end the task as one that tried to leave its portal.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import socketserver
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.ssrf import Resolver, UrlRefused, resolve_checked, system_resolver
from worker.errors import LeftPortal

log = logging.getLogger(__name__)

_MAX_HEAD_BYTES = 64 * 1024
_MAX_REFUSALS = 1000
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te"}
# Headers that only a page's own requests carry (navigations, frames, fetch, subresources);
# Chromium's background requests (update checks and the like) carry none of them. They are
# refused all the same; only the page's are held against the task.
_PAGE_HEADERS = {"referer", "origin", "upgrade-insecure-requests", "sec-fetch-mode"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """scheme://host:port, normalised; ``allow_private`` says whether it may be on a private
    address (the operator's own sandbox portal, or PORTAL_ALLOW_PRIVATE)."""

    scheme: str
    host: str
    port: int
    allow_private: bool = False

    @classmethod
    def of(cls, url: str, *, allow_private: bool = False) -> Origin:
        """The origin of an http(s) URL; ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        return cls(parts.scheme, parts.hostname.lower(), port, allow_private)

    def same(self, scheme: str, host: str, port: int) -> bool:
        return (self.scheme, self.host, self.port) == (scheme, host.lower().strip("[]"), port)

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def origin_of(url: str) -> str | None:
    """The normalised origin of an http(s) URL, or None for any other URL."""
    try:
        return str(Origin.of(url))
    except ValueError:
        return None


@dataclass(frozen=True)
class Refusal:
    """A request the proxy did not let out, and why."""

    url: str
    reason: str
    page: bool = False  # made by a page (not by the browser itself)


class EgressProxy:
    """A forward proxy that lets out only the current task's origins. Thread-safe."""

    def __init__(
        self,
        *,
        bind_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        resolver: Resolver = system_resolver,
        connect_timeout_s: float = 15.0,
        idle_timeout_s: float = 120.0,
    ) -> None:
        self._resolver = resolver
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._allowed: tuple[Origin, ...] = ()
        self._refusals: list[Refusal] = []
        self.requests = 0  # requests let through, for tests and metrics
        self._server = _Server((bind_host, 0), _Handler)
        self._server.proxy = self
        self.port: int = self._server.server_address[1]
        self.host = advertise_host or bind_host
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="egress-proxy", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port for Chromium's ``--proxy-server``."""
        return f"{self.host}:{self.port}"

    def allow(self, origins: Iterable[Origin]) -> None:
        """Let out only these origins from now on, and forget earlier refusals (a new task)."""
        with self._lock:
            self._allowed = tuple(origins)
            self._refusals = []

    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- used by the handler --

    def _check(
        self, scheme: str | None, host: str, port: int, url: str, *, page: bool = False
    ) -> str:
        """The checked address to connect to, or UrlRefused (recorded). A ``None`` scheme is a
        tunnel, which may carry either scheme of an allowed host and port."""
        try:
            match = self._match(scheme, host, port)
            if match is None:
                raise UrlRefused("not one of the portal's origins")
            address = resolve_checked(
                host.strip("[]"), port, allow_private=match.allow_private, resolver=self._resolver
            )
        except UrlRefused as exc:
            self._refuse(url, str(exc), page=page)
            raise
        with self._lock:
            self.requests += 1
        return address

    def _match(self, scheme: str | None, host: str, port: int) -> Origin | None:
        with self._lock:
            allowed = self._allowed
        return next((o for o in allowed if o.same(scheme or o.scheme, host, port)), None)

    def _refuse(self, url: str, reason: str, *, page: bool = False) -> None:
        with self._lock:
            if len(self._refusals) < _MAX_REFUSALS:  # a page may retry forever; one is enough
                self._refusals.append(Refusal(url, reason, page))
        # The browser's own background requests are refused too, but are not worth a warning.
        log.log(logging.WARNING if page else logging.INFO, "egress refused %s: %s", url, reason)

    def _connect(self, address: str, port: int) -> socket.socket:
        return socket.create_connection((address, port), timeout=self._connect_timeout_s)


class Boundary:
    """The origins one task may reach, checked where the engine can see them: the URL a
    ``goto`` opens, the browser's URL after every step, and the page's refused requests."""

    def __init__(self, origins: Sequence[Origin], proxy: EgressProxy | None) -> None:
        self.origins = tuple(origins)
        self.proxy = proxy
        if proxy is not None:
            proxy.allow(self.origins)

    def allows(self, url: str) -> bool:
        try:
            origin = Origin.of(url)
        except ValueError:
            return False
        return any(o.same(origin.scheme, origin.host, origin.port) for o in self.origins)

    def target(self, url: str, base_url: str) -> str:
        """The absolute URL a ``goto`` opens, or LeftPortal if it is not on the portal."""
        url = url.strip()
        full = url if _SCHEME.match(url) else f"{base_url.rstrip('/')}/{url.lstrip('/')}"
        if not full.lower().startswith(("http://", "https://")):
            raise LeftPortal(f"goto may open only http(s) pages of the portal, not {url[:200]}")
        if not self.allows(full):
            raise LeftPortal(f"{url[:200]} is not on one of the portal's origins")
        return full

    def check(self, current_url: str | None) -> None:
        """LeftPortal if the browser is off the portal or a page asked for another origin."""
        if current_url and not self._fine(current_url):
            raise LeftPortal(f"the browser was sent to {current_url[:200]}")
        if self.proxy is not None:
            for refusal in self.proxy.refusals():
                if refusal.page:
                    raise LeftPortal(f"a page asked for {refusal.url[:200]} ({refusal.reason})")

    def _fine(self, url: str) -> bool:
        if url in ("about:blank", "data:,") or url.startswith("chrome-error://"):
            return True  # a start page, or a failed load the page checks report
        return self.allows(url.removeprefix("blob:"))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: EgressProxy


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        proxy = self.server.proxy
        self.request.settimeout(proxy._idle_timeout_s)
        self._early = b""  # bytes read past the request head (the start of a body)
        try:
            head = self._read_head()
        except (OSError, ValueError):
            return
        if head is None:
            return
        request_line, *header_lines = head.split("\r\n")
        try:
            method, target, version = request_line.split(" ")
        except ValueError:
            self._answer(400, "malformed request line")
            return
        if method.upper() == "CONNECT":
            self._tunnel(proxy, target)
        else:
            self._forward(proxy, method, target, version, header_lines)

    def _read_head(self) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > _MAX_HEAD_BYTES:
                raise ValueError("request head too large")
        end = data.index(b"\r\n\r\n")
        self._early = data[end + 4 :]
        return data[:end].decode("latin-1")

    def _answer(self, status: int, text: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}.get(status, "Error")
        body = f"Understudy egress: {text}\n".encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            self.request.sendall(head.encode("latin-1") + body)

    def _tunnel(self, proxy: EgressProxy, target: str) -> None:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            self._answer(400, "CONNECT needs host:port")
            return
        port = int(port_text)
        try:
            # A tunnel may carry https or wss: the host and port must be an allowed origin's.
            address = proxy._check(None, host, port, f"https://{target}/")
        except UrlRefused as exc:
            self._answer(403, f"refused {target}: {exc}")
            return
        try:
            upstream = proxy._connect(address, port)
        except OSError as exc:
            self._answer(502, f"cannot reach {target}: {exc}")
            return
        with upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            self._pipe(upstream, proxy._idle_timeout_s)

    def _forward(
        self, proxy: EgressProxy, method: str, target: str, version: str, header_lines: list[str]
    ) -> None:
        try:
            parts = urlsplit(target)
        except ValueError:  # "http://[::1": no address at all
            self._answer(400, "bad URL")
            return
        names = {h.split(":", 1)[0].strip().lower() for h in header_lines}
        page = bool(names & _PAGE_HEADERS)
        if parts.scheme != "http" or not parts.hostname:
            # Only plain http arrives in absolute form; https and wss come as CONNECT.
            proxy._refuse(target[:2000], "only http(s) is allowed", page=page)
            self._answer(403, f"refused {target[:200]}: only http(s) is allowed")
            return
        try:
            port = parts.port or 80
        except ValueError:
            self._answer(400, "bad port")
            return
        try:
            address = proxy._check("http", parts.hostname, port, target, page=page)
        except UrlRefused as exc:
            self._answer(403, f"refused {target[:200]}: {exc}")
            return
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        headers = [h for h in header_lines if h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
        # One request per connection: the upstream closes after its answer, and so do we.
        head = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
        try:
            upstream = proxy._connect(address, port)
        except OSError as exc:
            self._answer(502, f"cannot reach {target[:200]}: {exc}")
            return
        with upstream:
            upstream.sendall(head.encode("latin-1"))
            self._pipe(upstream, proxy._idle_timeout_s)

    def _pipe(self, upstream: socket.socket, idle_timeout_s: float) -> None:
        """Relay bytes both ways until either side closes or nothing moves for a while."""
        client = self.request
        if self._early:
            upstream.sendall(self._early)
        sockets = [client, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], idle_timeout_s)
            if not readable:
                return
            for sock in readable:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                other = upstream if sock is client else client
                try:
                    other.sendall(chunk)
                except OSError:
                    return
