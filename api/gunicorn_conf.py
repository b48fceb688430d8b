"""gunicorn's settings for the `web` process, read from the same settings object as the app.

`gunicorn -c python:api.gunicorn_conf 'api:create_app()'` (the Procfile's `web:` line). Every
gunicorn option the API relies on lives here, so the Procfile and the Kubernetes manifests
cannot drift apart.

Workers are threaded (gthread): a request waiting on the database holds a thread, not the
process. A liveness probe (``GET /healthz``) is answered by the worker's main loop from memory,
before it would queue for a thread, so a database outage that keeps every thread busy never
makes a healthy API look dead.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
threads = _settings.api_threads
accesslog = "-"

_PROBE = (b"GET /healthz ", b"GET /healthz?", b"HEAD /healthz ")
_PROBE_BODY = b'{"status":"ok"}\n'
_PROBE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
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


worker_class = ProbeFirstWorker
