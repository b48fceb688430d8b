"""Clients that send their request body slowly, against gunicorn as production runs it.

A body trickled a byte a second is answered 408 ``read_timeout`` at API_READ_TIMEOUT_S and its
connection closed, while other clients are served; an answer given before the body was read (a
401) closes the connection and is the only answer on it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.api.test_gunicorn import Gunicorn


@pytest.fixture(scope="module")
def slow_server(services) -> Iterator[Gunicorn]:
    # One worker of two threads with a 2 s read bound: two trickling clients hold all its
    # threads, and the request bound (30 s) is far beyond the read bound.
    env = {
        "DATABASE_URL": services["database_url"],
        "REDIS_URL": services["redis_url"],
        "UNDERSTUDY_RUN_DIR": services["run_dir"],
        "API_WORKERS": "1",
        "API_THREADS": "2",
        "API_READ_TIMEOUT_S": "2",
    }
    server = Gunicorn("api:create_app()", env)
    yield server
    server.stop()


def _trickle(port: int, auth: bytes = b"", give_up_s: float = 25) -> bytes:
    """POST /tasks announcing a 1 MB body, then one byte a second; all the server sent back
    until it closed the connection (or ``give_up_s`` passed)."""
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000\r\n" + auth + b"\r\n"
    )
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # closed by the server: read what it said
                sock.sendall(b" ")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    return received


def _answers(received: bytes) -> list[tuple[int, dict]]:
    """Every HTTP response in ``received``: its status and JSON body."""
    answers = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        answers.append((int(lines[0].split()[1]), json.loads(rest[:length])))
        received = rest[length:]
    return answers


def test_trickled_bodies_are_cut_off_and_others_are_served(slow_server, account):
    # given clients with a valid key that trickle their POST /tasks bodies on every thread
    auth = b"Authorization: " + account.headers["Authorization"].encode() + b"\r\n"
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(_trickle, slow_server.port, auth) for _ in range(4)]
        time.sleep(0.5)
        # when another client lists its tasks meanwhile
        listed = requests.get(f"{slow_server.url}/tasks", headers=account.headers, timeout=20)
        received = [future.result() for future in slow]

    # then it is answered (it waited for the whole 30 s request bound before)
    assert listed.status_code == 200, listed.text
    # and each trickling client gets one 408 naming the setting, and its connection closed
    # (they were held until the 503 of the 30 s request bound)
    for data in received:
        ((status, body),) = _answers(data)
        assert status == 408, body
        assert body["error"]["code"] == "read_timeout"
        assert body["error"]["details"] == {"limit": "API_READ_TIMEOUT_S", "max": 2}


def test_a_401_on_a_trickled_body_is_the_only_answer(slow_server):
    # given a client with no API key that trickles its POST /tasks body
    # when it sends the headers and goes on sending a byte a second
    received = _trickle(slow_server.port, give_up_s=40)

    # then the 401 is the only answer on the connection, which the server closed (a 503 of the
    # request bound followed it, 30 s later), saying so
    ((status, body),) = _answers(received)
    assert status == 401, body
    assert b"\r\nconnection: close\r\n" in received.lower()
