"""The worker's main loop reading requests, against gunicorn as production runs it, at its
bounds: the 16 MiB it holds at most of requests no thread has taken yet.

While stalled uploads hold those 16 MiB, and more of them hold every thread, a liveness probe
(``GET /healthz``) is still answered at once by the main loop.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.api.test_gunicorn import Gunicorn, serve_api

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def reading_server(services) -> Iterator[Gunicorn]:
    # One worker of two threads, with a read bound long enough for the stalled uploads below to
    # hold the main loop's 16 MiB and both threads for the whole test.
    yield from serve_api(services, API_WORKERS="1", API_THREADS="2", API_READ_TIMEOUT_S="20")


def _stalled_upload(port: int, auth: bytes, sent: int) -> socket.socket:
    """A POST /tasks with a valid key announcing a 1 MiB body, ``sent`` bytes of it sent, the
    rest never (a thread that takes it waits for the rest)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % MIB + auth + b"\r\n" + b" " * sent
    )
    return sock


def test_a_probe_is_answered_while_stalled_uploads_hold_the_worker(reading_server, account):
    # given 16 uploads stalled short of their end, each held by the main loop (16 MiB in all),
    # and 4 more that go to the threads with what they sent, holding both for 20 s each
    auth = b"Authorization: " + account.headers["Authorization"].encode() + b"\r\n"
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(_stalled_upload(reading_server.port, auth, MIB - 4096))
        time.sleep(1)

        # when the liveness probe asks
        started = time.monotonic()
        probe = requests.get(f"{reading_server.url}/healthz", timeout=5)

        # then it is answered at once (it waited behind the stalled uploads' threads)
        assert probe.status_code == 200
        assert probe.json() == {"status": "ok"}
        assert time.monotonic() - started < 2
