"""The API's gunicorn worker: gthread, whose main loop reads each request before a thread takes
it, with probes on the main loop, JSON errors and a bound on every request.

gthread hands a connection to a thread as soon as its first bytes arrive, and the thread waits
for the rest: a client sending a byte a second holds that thread, and clients opening such
connections faster than the threads free up kept every other client waiting, with no API key.
Here the main loop reads each request's bytes as they arrive, without blocking, and a thread
takes the connection only once the request is all there (:class:`ProbeFirstWorker`):

- its headers, and its body (Content-Length bytes, or a chunked body to its last chunk), or
  1 MiB of it: a larger upload goes to a thread with that much, and the thread reads the rest;
- a request not all there API_READ_TIMEOUT_S after its first bytes is answered 408
  ``read_timeout`` by the main loop, which then reads and drops the client's further bytes for
  :data:`_LINGER_S` at most (so the answer is not lost to a reset) and closes the connection;
- the main loop holds 16 MiB at most per worker of requests no thread has taken yet; past that,
  connections go to threads with what they sent so far, as gthread does, but for a probe
  request all there, which the main loop still answers, peeking at it rather than holding it;
- a kept-alive connection waits on the main loop the same way for its next request.

A liveness probe (``GET /healthz``) is answered by the main loop from memory once it is all
there, before it would queue for a thread, so busy threads never make a healthy API look dead.

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

A thread that still reads from the socket (an upload past 1 MiB, a header section past
gunicorn's limits, or any request while the main loop holds its 16 MiB) is bounded as well
(:class:`_Conn`):

- every read of a request's socket waits at most until API_READ_TIMEOUT_S after the thread took
  the request; past it the request is answered 408 ``read_timeout`` and the connection closed,
  however the bytes trickle in;
- an answer given before the body was read in full (a 401, 413 or 415) closes the connection
  (``Connection: close``) rather than drain the rest of the body in the thread first.

A connection answered by its thread is closed in that thread, lingering at most
:data:`_LINGER_S` for the client's unread bytes, never blocking the main loop. A connection
gets one answer at most: a deadline passed after the answer started only closes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import re
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
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

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
        self.arriving: _Arriving | None = None  # the request the main loop is reading
        self.read_ahead = b""  # what the main loop read of the request a thread now serves
        self.continued = False  # the main loop sent "100 Continue" for that request

    def init(self) -> None:
        fresh = not self.initialized
        super().init()
        if fresh and type(self.parser.unreader) is SocketUnreader:
            self.parser.unreader = _DeadlineUnreader(self.sock, self)
        if self.read_ahead:
            self.parser.unreader.unread(self.read_ahead)
            self.read_ahead = b""

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
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What the main loop holds of requests still arriving: at most this much of one request (a
# longer one goes to a thread with what it sent so far), and at most this much in all per
# worker (past it, new bytes are left for threads to read).
_BUFFER_BYTES = 1024 * 1024
_BUFFERED_MAX_BYTES = 16 * 1024 * 1024
_RECV_BYTES = 64 * 1024
# How much of a probe request is looked at while the worker holds its 16 MiB (not read).
_PEEK_BYTES = 4096
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Arriving:
    """What the main loop knows of one request while its bytes arrive."""

    __slots__ = ("body_at", "chunk_at", "chunked", "continued", "data", "due", "end", "scanned")

    def __init__(self, data: bytes, due: float) -> None:
        self.data = bytearray(data)
        self.due = due  # answered 408 by the main loop if not all there by then
        self.scanned = 0  # how far the search for the end of the headers went
        self.body_at = -1  # where the body starts, once the headers are in
        self.end = -1  # where the request ends, when its length is known
        self.chunked = False
        self.chunk_at = 0  # the next chunk's size line, in a chunked body
        self.continued = False  # "100 Continue" sent by the main loop


def _chunked_end(arriving: _Arriving) -> int | None:
    """Where a chunked body ends (-1: not all there yet), scanning on from the last call; None
    when its framing is wrong (the thread's parser refuses it)."""
    data, at = arriving.data, arriving.chunk_at
    while True:
        eol = data.find(b"\r\n", at)
        if eol < 0:
            return -1 if len(data) - at <= 1024 else None
        size = bytes(data[at:eol]).split(b";", 1)[0].strip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size):
            return None
        if size.strip(b"0") == b"":
            trailers_end = data.find(b"\r\n\r\n", eol)
            return -1 if trailers_end < 0 else trailers_end + 4
        after = eol + 2 + int(size, 16) + 2
        if len(data) < after:
            return -1
        if data[after - 2 : after] != b"\r\n":
            return None
        at = arriving.chunk_at = after


class ProbeFirstWorker(ThreadWorker):
    """gthread, whose main loop reads each request before a thread takes it, and answers
    ``GET /healthz`` itself.

    gthread hands a connection to a thread as soon as its first bytes arrive, and the thread
    then waits for the rest: a client sending a byte a second held a thread however short the
    bound, so a few of them reconnecting kept every thread busy. Here the main loop reads a
    connection's bytes as they arrive (non-blocking) and hands it to a thread only once its
    request is all there (headers, and a body of Content-Length or chunked), or once it holds
    :data:`_BUFFER_BYTES` of it (a large upload: its thread reads the rest under its own
    bound). A request not all there API_READ_TIMEOUT_S after its first bytes is answered 408
    ``read_timeout`` by the main loop, no thread involved. A complete probe request is answered
    on the main loop too, so busy threads never make a healthy API look dead. A kept-alive
    connection waits on the main loop the same way for its next request.
    """

    def init_process(self) -> None:
        self.read_timeout_s = load_settings().api_read_timeout_s
        self._arriving: dict[_Conn, _Arriving] = {}  # in order of their 408 deadlines
        self._lingering: dict[_Conn, float] = {}  # answered 408; closed at the time given
        self._buffered = 0  # bytes held for requests no thread has taken yet
        self._buffered_lock = threading.Lock()
        # gunicorn's own bound on a request line and header section: a longer one goes to a
        # thread, which answers 414 or 431.
        cfg = self.cfg
        fields = cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4
        self._head_bytes = min(_BUFFER_BYTES, cfg.limit_request_line + 2 + fields)
        super().init_process()

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
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: _Conn, client: socket.socket) -> None:
        if self.cfg.is_ssl:  # the bytes are TLS records: the thread reads them
            self._hand_over(conn)
            return
        arriving = conn.arriving
        held = len(arriving.data) if arriving else 0
        # Threads only ever lower the total, so reading it without the lock errs on the safe side.
        room = min(_RECV_BYTES, _BUFFER_BYTES - held, _BUFFERED_MAX_BYTES - self._buffered)
        if room <= 0:
            # A probe is still answered here, peeked at rather than held: with the worker's
            # 16 MiB held by stalled uploads, it queued behind their threads for as long as
            # they stalled, and a healthy API looked dead.
            if arriving is None and self._answer_peeked_probe(conn):
                self._forget(conn)
                self._drop(conn)
                return
            self._hand_over(conn)  # its thread reads on from the socket
            return
        try:
            data = client.recv(room)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left (or reset) before its request was all there
            self._forget(conn)
            self._drop(conn)
            return
        if arriving is None:
            self._forget(conn)  # no longer idle: it was waiting for a request
            arriving = conn.arriving = _Arriving(b"", time.monotonic() + self.read_timeout_s)
            self._arriving[conn] = arriving
        arriving.data += data
        with self._buffered_lock:
            self._buffered += len(data)
        self._on_bytes(conn, arriving)

    def _on_bytes(self, conn: _Conn, arriving: _Arriving) -> None:
        """Hand the connection over, or answer its probe, once the request is all there."""
        if not self._arrived(conn, arriving):
            return
        if arriving.data.startswith(_PROBE) and self._answer_probe(conn, arriving.data):
            self._forget(conn)
            self._drop(conn)
            return
        self._hand_over(conn)

    def _arrived(self, conn: _Conn, arriving: _Arriving) -> bool:
        """Whether the request is all there, or as much of it as the main loop holds."""
        data = arriving.data
        if len(data) >= _BUFFER_BYTES:
            return True
        if arriving.body_at < 0:
            end = data.find(b"\r\n\r\n", max(arriving.scanned - 3, 0))
            if end < 0:
                arriving.scanned = len(data)
                return len(data) >= self._head_bytes
            arriving.body_at = end + 4
            framing = _framing(bytes(data[:end]))
            if framing is None:
                return True  # the thread's parser refuses it, or reads it as it can
            chunked, length, expects = framing
            arriving.chunked = chunked
            arriving.chunk_at = arriving.body_at
            if not chunked:
                arriving.end = arriving.body_at + length
            if expects and not self._continue(conn, arriving):
                return True
        if arriving.chunked and arriving.end < 0:
            chunked_end = _chunked_end(arriving)
            if chunked_end is None:
                return True
            arriving.end = chunked_end
        return 0 <= arriving.end <= len(data)

    @staticmethod
    def _continue(conn: _Conn, arriving: _Arriving) -> bool:
        """Tell a client waiting for it to send its body ("100 Continue"), if all there is not."""
        if arriving.end >= 0 and arriving.end <= len(arriving.data):
            return True
        try:
            sent = conn.sock.send(_CONTINUE)
        except OSError:
            sent = 0
        # Not sent whole: its thread says it, and waits for the body under its own bound.
        arriving.continued = sent == len(_CONTINUE)
        return arriving.continued

    def _hand_over(self, conn: _Conn) -> None:
        self._forget(conn)
        self.poller.unregister(conn.sock)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _forget(self, conn: _Conn) -> None:
        """Take the connection off whichever list of the main loop's it waited on."""
        if conn.arriving is not None:
            self._arriving.pop(conn, None)
        elif conn in self._lingering:
            del self._lingering[conn]
        elif conn.initialized:
            self.keepalived_conns.remove(conn)
        else:
            self.pending_conns.remove(conn)

    def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self._take(conn)
        self.nr_conns -= 1
        conn.close()

    def _take(self, conn: _Conn) -> _Arriving | None:
        """What was held for the connection's request, no longer counted as held."""
        arriving, conn.arriving = conn.arriving, None
        if arriving is not None:
            self._release(len(arriving.data))
        return arriving

    def _release(self, size: int) -> None:
        if size:
            with self._buffered_lock:
                self._buffered -= size

    @staticmethod
    def _answer_probe(conn: _Conn, request: bytes | bytearray) -> bool:
        """Answer the probe ``request``, read whole from the socket: closing the socket then
        sends a FIN, not a reset that could destroy the answer in flight."""
        try:
            head = request.startswith(b"HEAD")
            conn.sock.sendall(_PROBE_ANSWER + (b"" if head else _PROBE_BODY))
        except OSError:
            return False  # let the thread path see, and report, whatever is wrong
        return True

    def _answer_peeked_probe(self, conn: _Conn) -> bool:
        """Answer a probe whose request is all on the socket, reading no more than that."""
        try:
            head = conn.sock.recv(_PEEK_BYTES, socket.MSG_PEEK)
            end = head.find(b"\r\n\r\n")
            if not head.startswith(_PROBE) or end < 0 or _framing(head[:end]) != (False, 0, False):
                return False
            conn.sock.recv(end + 4)
        except OSError:
            return False  # let the thread path see, and report, whatever is wrong
        return self._answer_probe(conn, head)

    def finish_request(self, conn: Any, fs: Any) -> None:
        # A request answered with the connection kept alive: the main loop waits for the next
        # one, starting from whatever of it the thread already read.
        try:
            kept = not fs.cancelled() and fs.exception() is None and fs.result() is True
        except Exception:  # noqa: BLE001 - gunicorn's own path closes it
            kept = False
        if not kept or self.cfg.is_ssl:
            super().finish_request(conn, fs)
            return
        try:
            read_ahead = conn.parser.unreader.take_buffered()
            conn.sock.setblocking(False)
            conn.set_timeout()
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            arriving = None
            if read_ahead:
                arriving = _Arriving(read_ahead, time.monotonic() + self.read_timeout_s)
                conn.arriving = self._arriving[conn] = arriving
                with self._buffered_lock:
                    self._buffered += len(read_ahead)
            else:
                self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
            if arriving is not None:
                self._on_bytes(conn, arriving)
        except Exception:  # noqa: BLE001 - as gunicorn does: the connection is closed
            self._forget_quietly(conn)
            self._take(conn)
            self.nr_conns -= 1
            conn.close()

    def _forget_quietly(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(KeyError, ValueError):
            self._forget(conn)

    def murder_pending(self) -> None:
        # Called by the main loop about once a second.
        super().murder_pending()
        now = time.monotonic()
        while self._arriving:
            conn, arriving = next(iter(self._arriving.items()))
            if arriving.due > now:
                break
            self._too_late(conn)
        for conn, close_at in list(self._lingering.items()):
            if close_at <= now:
                del self._lingering[conn]
                self._drop(conn)

    def _too_late(self, conn: _Conn) -> None:
        """Answer 408 a request not all there in time, without a thread: the answer is written
        without waiting, then the client's further bytes are read and dropped for
        :data:`_LINGER_S` at most (so the answer is not lost to a reset) before closing."""
        del self._arriving[conn]
        self._take(conn)
        self.log.warning("Request did not arrive within %g s", self.read_timeout_s)
        try:
            conn.sock.send(_read_timeout_answer(self.read_timeout_s))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        self._lingering[conn] = time.monotonic() + _LINGER_S
        self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._linger, conn))

    def _linger(self, conn: _Conn, client: socket.socket) -> None:
        try:
            left = not client.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            left = True
        if left:
            del self._lingering[conn]
            self._drop(conn)


def _framing(head: bytes) -> tuple[bool, int, bool] | None:
    """How a request's body is framed, from its header section: (chunked, Content-Length,
    whether the client waits for "100 Continue"); None when the main loop cannot tell
    (refused framing, repeated or malformed fields: the thread's parser deals with them)."""
    lines = head.lower().split(b"\r\n")
    length = chunked = expects = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        value = value.strip(b" \t")
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            if chunked is not None or value != b"chunked":
                return None
            chunked = True
        elif name == b"expect":
            expects = value == b"100-continue"
    if chunked and length is not None:
        return None
    expects = bool(expects) and lines[0].endswith(b" http/1.1")
    return bool(chunked), length or 0, expects


class ApiWorker(ProbeFirstWorker):
    """The probe-first gthread worker; gunicorn's errors in JSON; a deadline on each request and
    on its arrival."""

    def init_process(self) -> None:
        _wait_in_python()
        self.request_timeout_s = load_settings().api_request_timeout_s
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
        arriving = self._take(conn)
        if arriving is not None:
            conn.read_ahead, conn.continued = bytes(arriving.data), arriving.continued
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

    def handle_request(self, req: Any, conn: Any) -> Any:
        if conn.continued:  # the main loop said it already, and read the body since
            req._expected_100_continue = False
            conn.continued = False
        return super().handle_request(req, conn)

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
