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

gthread reads a request's headers and body in the thread that serves it, so a client sending
them slowly holds that thread. Two bounds keep it short (:class:`_Conn`):

- every read of a request's socket waits at most until API_READ_TIMEOUT_S after the thread took
  the request (its first bytes had arrived); past it the request is answered 408
  ``read_timeout`` and the connection closed, however the bytes trickle in;
- an answer given before the body was read in full (a 401, 413 or 415) closes the connection
  (``Connection: close``) rather than drain the rest of the body in the thread first.

A connection is closed in its own thread, lingering at most :data:`_LINGER_S` for the client's
unread bytes (so the answer is not lost to a reset), never on the main loop. A connection gets
one answer at most: a deadline passed after the answer started only closes it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
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
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader
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


class ReadTimeout(SystemExit):
    """Raised in a request's thread when the request has not arrived by API_READ_TIMEOUT_S.

    A SystemExit for the same reason as :class:`RequestTimeout`.
    """


# How long closing a connection waits for the client to stop sending, so that the kernel does
# not answer its unread bytes with a reset that destroys the answer in flight.
_LINGER_S = 1.0


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
    """One request being handled: its thread, its deadline and its answer once started."""

    thread_id: int
    deadline: float
    active: bool = True
    interrupted: bool = False
    finished: bool = False
    response: Any = None

    @property
    def answered(self) -> bool:
        return self.response is not None and bool(self.response.headers_sent)


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, each read bounded by its connection's read deadline."""

    def __init__(self, sock: socket.socket, conn: _Conn) -> None:
        super().__init__(sock)
        self.conn = conn

    def chunk(self, size_hint: int | None = None) -> bytes:
        # One deadline for all the reads of a request: a per-read timeout alone lets a client
        # sending a byte a second go on for ever.
        remaining = self.conn.read_deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout
        self.sock.settimeout(remaining)
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            raise ReadTimeout from None
        finally:
            self.sock.settimeout(None)  # writes stay blocking, as gunicorn expects


class _Conn(TConn):
    """gunicorn's connection, read under a deadline and closed by its thread."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read_deadline = math.inf
        self.closed_in_thread = False

    def init(self) -> None:
        fresh = not self.initialized
        super().init()
        if fresh and type(self.parser.unreader) is SocketUnreader:
            self.parser.unreader = _DeadlineUnreader(self.sock, self)

    def close_in_thread(self) -> None:
        self.closed_in_thread = True
        util.close_graceful(self.sock, timeout=_LINGER_S)

    def close(self, graceful: bool = False) -> None:
        # The main loop's own graceful close lingers up to 2 s, blocking: never for a slow client.
        if not self.closed_in_thread:
            super().close(graceful)


def _body_unread(body: Any) -> bool:
    """Whether part of a request body is still on the socket (gunicorn's ``wsgi.input``)."""
    reader = getattr(body, "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return reader is not None and not getattr(reader, "finished", True)


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
        conn = _Conn(self.cfg, client_sock, client_addr, listener.getsockname())
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
    """The probe-first gthread worker; gunicorn's errors in JSON; a deadline on each request and
    on its arrival."""

    def init_process(self) -> None:
        _wait_in_python()
        settings = load_settings()
        self.request_timeout_s = settings.api_request_timeout_s
        self.read_timeout_s = settings.api_read_timeout_s
        self._running: dict[int, tuple[_Running, Any]] = {}
        self._running_lock = threading.Lock()
        self._current = threading.local()  # the _Running of the request this thread serves
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009 - gunicorn sets it untyped

        def closing_on_unread_body(environ: dict, start_response: Any) -> Any:
            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                # gunicorn passes its Response's bound start_response.
                response = start_response.__self__
                self._current.running.response = response
                if _body_unread(environ.get("wsgi.input")):
                    # Answered before the body was read (401, 413, 415...): reading the rest
                    # first would hold this thread for as long as the client cares to send it.
                    response.force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        self.wsgi = closing_on_unread_body

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
        now = time.monotonic()
        running = _Running(threading.get_ident(), now + self.request_timeout_s)
        self._current.running = running
        conn.read_deadline = now + self.read_timeout_s
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
                self._refuse(conn, running, _timeout_answer(self.request_timeout_s))
            result = False
        except ReadTimeout:
            self.log.warning("Request did not arrive within %g s", self.read_timeout_s)
            self._refuse(conn, running, _read_timeout_answer(self.read_timeout_s))
            result = False
        if not result:
            conn.close_in_thread()
        return result

    def _refuse(self, conn: Any, running: _Running, answer: bytes) -> None:
        # One answer per request: once the app's has started, a deadline can only close.
        if not running.answered:
            self._write(conn.sock, answer)

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


def _read_timeout_answer(timeout_s: float) -> bytes:
    return json_error(
        408,
        "Request Timeout",
        "read_timeout",
        f"The request did not arrive within {timeout_s:g} s (API_READ_TIMEOUT_S); send it"
        " again, faster.",
        {"limit": "API_READ_TIMEOUT_S", "max": timeout_s},
    )


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in the thread ``thread_id`` at its next Python instruction (None: cancel)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else ctypes.c_void_p(0)
    )
