"""The API's gunicorn worker: gthread, with probes on the main loop, JSON errors and a bound on
every request.

A liveness probe (``GET /healthz``) is answered by the main loop from memory, before it would
queue for a thread (:class:`ProbeFirstWorker`), so busy threads never make a healthy API look
dead.

gunicorn answers some requests before the app sees them (a bad request line, a URL or headers
over the limits, a malformed chunk) with an HTML page of its own; this worker answers them in
the API's JSON error shape instead. It also keeps a deadline per request: a request still
running after API_REQUEST_TIMEOUT_S is interrupted in its thread and answered 503
``request_timeout``, so no request can hold a worker thread for longer. When the arbiter
aborts a stuck worker (its own timeout), the requests in flight get the same JSON answer.

Interrupting a thread raises :class:`RequestTimeout` in it at its next Python instruction
(CPython's ``PyThreadState_SetAsyncExc``); a thread blocked in C sees it once that call returns.
A database call waits for its answer in Python here (:func:`_wait_in_python`), so a database
that stopped answering (hung, or its host frozen) holds a request no longer than the others.
"""

from __future__ import annotations

import ctypes
import errno
import json
import selectors
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn import glogging, util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from shared.settings import load_settings


class ApiLogger(glogging.Logger):
    """gunicorn's logger without its access log, which the app writes itself with the request
    id (``api.request_log``); gunicorn would otherwise build every access line's fields even
    with no handler to write them."""

    access_log_enabled = False


# exception class -> (status, reason, code); the first match wins, so subclasses come first.
_CLIENT_ERRORS: list[tuple[type[BaseException], int, str, str]] = [
    (http_errors.LimitRequestLine, 414, "URI Too Long", "uri_too_long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented", "not_implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed", "expectation_failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "forbidden"),
    (http_errors.ParseException, 400, "Bad Request", "bad_request"),
]


class RequestTimeout(SystemExit):
    """Raised inside a request's thread when it passes its deadline.

    A SystemExit, so that neither the app's ``except Exception`` nor gunicorn's error path
    swallows it on the way out; gunicorn's request loop treats it as an abort.
    """


def json_error(status: int, reason: str, code: str, message: str, details: Any = None) -> bytes:
    """A complete HTTP/1.1 answer carrying the API's JSON error shape, with a request id of its
    own (the request's headers were not read, or not trusted)."""
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"X-Request-Id: {uuid.uuid4().hex}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def _limit(code: str, exc: BaseException) -> dict[str, Any] | None:
    """The setting a refused request line or header section went past, and its value."""
    settings = load_settings()
    if code == "uri_too_long":
        return {"limit": "MAX_URL_BYTES", "max": settings.max_url_bytes}
    if code != "headers_too_large":
        return None
    if str(exc) == "limit request headers fields":  # gunicorn's words for too many
        return {"limit": "MAX_HEADERS", "max": settings.max_headers}
    return {"limit": "MAX_HEADER_BYTES", "max": settings.max_header_bytes}


@dataclass
class _Running:
    """One request being handled: its thread and its deadline."""

    thread_id: int
    deadline: float
    active: bool = True
    interrupted: bool = False
    finished: bool = False


_PROBE = (b"GET /healthz ", b"GET /healthz?", b"HEAD /healthz ")
_PROBE_BODY = b'{"status":"ok"}\n'
_PROBE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_PROBE_BODY)
)


class ProbeFirstWorker(ThreadWorker):
    """gthread, with ``GET /healthz`` answered on the main loop instead of a thread.

    A new connection waits on the main loop's poller (as a kept-alive one does) until its first
    bytes arrive; a complete probe request is answered there, anything else goes to a thread.
    """

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.timeout = time.monotonic() + self.cfg.keepalive  # closed by murder_pending
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._first_bytes, conn))

    def _first_bytes(self, conn: TConn, client: socket.socket) -> None:
        if not self._answer_probe(conn):
            self.on_pending_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _answer_probe(conn: TConn) -> bool:
        try:
            head = conn.sock.recv(4096, socket.MSG_PEEK)
            # Only a whole request is answered here: reading it all first means closing the
            # socket sends a FIN, not a reset that could destroy the answer in flight.
            if not head.startswith(_PROBE) or b"\r\n\r\n" not in head:
                return False
            conn.sock.recv(head.index(b"\r\n\r\n") + 4)
            conn.sock.sendall(_PROBE_ANSWER + (b"" if head.startswith(b"HEAD") else _PROBE_BODY))
        except OSError:
            return False  # let the thread path see, and report, whatever is wrong
        return True


class ApiWorker(ProbeFirstWorker):
    """The probe-first gthread worker; gunicorn's errors in JSON; a deadline on each request."""

    def init_process(self) -> None:
        _wait_in_python()
        self.request_timeout_s = load_settings().api_request_timeout_s
        self._running: dict[int, tuple[_Running, Any]] = {}
        self._running_lock = threading.Lock()
        super().init_process()

    # -- errors gunicorn raises before the app runs --------------------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        for kind, status, reason, code in _CLIENT_ERRORS:
            if isinstance(exc, kind) and not isinstance(
                exc, http_errors.InvalidResponseHeader | http_errors.InvalidResponseHeaderName
            ):
                self.log.warning("Invalid request from %s: %s", (addr or ("",))[0], exc)
                message = _client_message(code, exc)
                self._write(client, json_error(status, reason, code, message, _limit(code, exc)))
                return
        self.log.exception("Error handling request")
        self._write(
            client,
            json_error(
                500,
                "Internal Server Error",
                "internal_error",
                "Something went wrong on our side.",
            ),
        )

    def _write(self, sock: Any, data: bytes) -> None:
        try:
            util.write_nonblock(sock, data)
        except Exception:  # noqa: BLE001 - the client may be gone; nothing left to tell it
            self.log.debug("Failed to send error message.")

    # -- the deadline of each request ----------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        running = _Running(threading.get_ident(), time.monotonic() + self.request_timeout_s)
        with self._running_lock:
            self._running[id(conn)] = (running, conn)
        try:
            try:
                result = super().handle(conn)
                running.finished = True
            finally:
                self._stop(conn, running)
        except RequestTimeout:
            self._stop(conn, running)  # again: the interruption may have cut the first one short
            if not running.finished:
                self.log.warning("Request timed out after %.0f s", self.request_timeout_s)
                self._write(conn.sock, _timeout_answer(self.request_timeout_s))
            return False
        return result

    def _stop(self, conn: Any, running: _Running) -> None:
        with self._running_lock:
            self._running.pop(id(conn), None)
            running.active = False
            if running.interrupted:
                # The interruption may not have been raised yet; it must not hit the next
                # request this thread serves.
                _async_raise(running.thread_id, None)

    def murder_pending(self) -> None:
        # Called by the main loop about once a second: interrupt requests past their deadline.
        super().murder_pending()
        now = time.monotonic()
        with self._running_lock:
            for running, _conn in self._running.values():
                if running.active and not running.interrupted and now > running.deadline:
                    running.interrupted = True
                    _async_raise(running.thread_id, RequestTimeout)

    def handle_abort(self, sig: int, frame: Any) -> None:
        # The arbiter's timeout: this worker is being stopped. Tell each waiting client why.
        # No lock: this runs in a signal handler, possibly while the main loop holds it.
        waiting = [conn for running, conn in list(self._running.values()) if running.active]
        for conn in waiting:
            self._write(conn.sock, _timeout_answer(self.request_timeout_s))
        super().handle_abort(sig, frame)


def _wait_in_python() -> None:
    """Have psycopg wait for the database in Python (epoll, looking up every 0.1 s), not in C.

    Its C wait holds the thread in C until the server answers, where the request's deadline
    cannot reach it: a frozen Postgres held requests for as long as it was frozen, past
    API_REQUEST_TIMEOUT_S. Interrupted in Python, psycopg asks the server to cancel the query,
    gives up on the connection after a few seconds more, and the request is answered 503. The
    cost is about 10 µs of CPU per query.
    """
    import psycopg.waiting

    psycopg.waiting.wait = getattr(psycopg.waiting, "wait_epoll", psycopg.waiting.wait_poll)


def _client_message(code: str, exc: BaseException) -> str:
    if code == "uri_too_long":
        return "The request line is too long (MAX_URL_BYTES)."
    if code == "headers_too_large":
        return "The request headers are too large or too many (MAX_HEADER_BYTES, MAX_HEADERS)."
    return f"The request could not be read: {exc}."


def _timeout_answer(timeout_s: float) -> bytes:
    return json_error(
        503,
        "Service Unavailable",
        "request_timeout",
        f"The request took longer than {timeout_s:g} s (API_REQUEST_TIMEOUT_S) and was stopped.",
        {"limit": "API_REQUEST_TIMEOUT_S", "max": timeout_s},
    )


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in the thread ``thread_id`` at its next Python instruction (None: cancel)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else ctypes.c_void_p(0)
    )
