"""Clients that send their requests slowly, against gunicorn as production runs it.

A body trickled a byte a second is answered 408 ``read_timeout`` at API_READ_TIMEOUT_S and its
connection closed, while other clients are served; an answer given before the body was read (a
401) closes the connection and is the only answer on it. Clients that trickle their requests on
more connections than there are threads, reconnecting as each is closed, hold no thread: the
worker's main loop reads requests until they are all there, so other clients are answered at
once.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.api.test_gunicorn import Gunicorn, serve_api


@pytest.fixture(scope="module")
def slow_server(services) -> Iterator[Gunicorn]:
    # One worker of two threads with a 2 s read bound: two trickling clients hold all its
    # threads, and the request bound (30 s) is far beyond the read bound.
    yield from serve_api(services, API_WORKERS="1", API_THREADS="2", API_READ_TIMEOUT_S="2")


def _trickle(port: int, auth: bytes = b"", give_up_s: float = 25, at_once: int = 0) -> bytes:
    """POST /tasks announcing a 2 MB body, ``at_once`` bytes of it at once, then one byte a
    second; all the server sent back until it closed the connection (or ``give_up_s`` passed)."""
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2000000\r\n" + auth + b"\r\n"
    )
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + b" " * at_once)
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
    # when it sends the headers and more of the body than the main loop holds (1 MiB: a thread
    # reads the rest), and goes on sending a byte a second
    received = _trickle(slow_server.port, give_up_s=40, at_once=1024 * 1024 + 1)

    # then the 401 is the only answer on the connection, which the server closed (a 503 of the
    # request bound followed it, 30 s later), saying so
    ((status, body),) = _answers(received)
    assert status == 401, body
    assert b"\r\nconnection: close\r\n" in received.lower()


def _trickling_clients(port: int, requests_: list[bytes], stop: threading.Event) -> list[bytes]:
    """One connection per request in ``requests_``, each sent a byte a second and reopened (to
    send it again) as soon as the server closes it, until ``stop``; what each connection the
    server closed received."""
    selector = selectors.DefaultSelector()
    sent: dict[socket.socket, list] = {}  # socket -> [its request, bytes sent, bytes received]

    def connect(request: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        sent[sock] = [request, 0, b""]
        selector.register(sock, selectors.EVENT_READ)

    for request in requests_:
        connect(request)
    closed: list[bytes] = []
    next_byte = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_byte:
            next_byte = time.monotonic() + 1
            for sock, state in sent.items():
                with contextlib.suppress(OSError):  # closed by the server: read what it said
                    sock.send(state[0][state[1] : state[1] + 1])
                    state[1] += 1
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                sent[sock][2] += chunk
                continue
            request, _, received = sent.pop(sock)
            selector.unregister(sock)
            sock.close()
            closed.append(received)
            connect(request)
    for sock in sent:
        sock.close()
    selector.close()
    return closed


def test_reconnecting_tricklers_hold_no_thread(slow_server, account):
    # given 40 connections on a worker of two threads, each sending its request a byte a second
    # and reconnecting when closed: 30 without an API key trickle their headers, 10 with a
    # valid key trickle their POST /tasks body
    auth = b"Authorization: " + account.headers["Authorization"].encode() + b"\r\n"
    headers = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"
    body = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n" + auth + b"\r\n" + b" " * 100
    )
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        tricklers = pool.submit(
            _trickling_clients, slow_server.port, [headers] * 30 + [body[:-100]] * 10, stop
        )
        try:
            time.sleep(1.5)
            # when another client lists its tasks, and again once the first tricklers were cut
            # off and came back
            listed = [requests.get(f"{slow_server.url}/tasks", headers=account.headers, timeout=10)]
            time.sleep(3)
            listed.append(
                requests.get(f"{slow_server.url}/tasks", headers=account.headers, timeout=10)
            )
        finally:
            stop.set()
        closed = tricklers.result()

    # then it is answered each time (it waited behind the tricklers' 2 s each, two at a time,
    # well past its 10 s before)
    assert [response.status_code for response in listed] == [200, 200]
    # and every trickling connection the server closed got one 408 naming the setting
    assert len(closed) >= 40
    for data in closed:
        ((status, answer),) = _answers(data)
        assert status == 408, answer
        assert answer["error"]["code"] == "read_timeout"
        assert answer["error"]["details"] == {"limit": "API_READ_TIMEOUT_S", "max": 2}


def _exchange(port: int, pieces: list[bytes], expect_continue: bool = False) -> bytes:
    """Send ``pieces`` 0.3 s apart on one connection; all the server sent back until it closed
    the connection. With ``expect_continue``, the pieces after the first wait for its 100."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received = b""
        for number, piece in enumerate(pieces):
            if number:
                time.sleep(0.3)
            if number == 1 and expect_continue:
                while b"\r\n\r\n" not in received:
                    received += sock.recv(65536)
            sock.sendall(piece)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_requests_arriving_in_pieces_are_served(slow_server, account):
    auth = b"Authorization: " + account.headers["Authorization"].encode() + b"\r\n"
    task = b'{"type": "no_such_type"}'
    post = b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth

    # given a request line and headers split, and a second request pipelined behind the first
    pipelined = _exchange(
        slow_server.port,
        [
            b"GET /openapi.json HTTP/1.1\r\nHo",
            b"st: x\r\n\r\nGET /tasks HTTP/1.1\r\nHost: x\r\n" + auth,
            b"Connection: close\r\n\r\n",
        ],
    )
    # then both are answered on the connection, in order
    head, _, rest = pipelined.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    ((status, listed),) = _answers(rest[length:])
    assert status == 200 and listed["data"] == [], listed

    # given a chunked body sent in pieces, one chunk split between two of them
    chunked = _exchange(
        slow_server.port,
        [
            post + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"%x\r\n%s\r\n5\r\n" % (len(task) - 5, task[:-5]),
            task[-5:] + b"\r\n0\r\n\r\n",
        ],
    )
    # then the app read the whole body: it names the unknown type
    ((status, refused),) = _answers(chunked)
    assert status == 422 and refused["error"]["details"][0]["field"] == "type", refused

    # given a client that waits for "100 Continue" before sending its body
    continued = _exchange(
        slow_server.port,
        [
            post + b"Expect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(task),
            task,
        ],
        expect_continue=True,
    )
    # then it is told once to go on, and answered once its body arrived
    interim, _, final = continued.partition(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue", continued
    ((status, refused),) = _answers(final)
    assert status == 422 and refused["error"]["details"][0]["field"] == "type", refused

    # given a probe split in two
    probe = _exchange(slow_server.port, [b"GET /heal", b"thz HTTP/1.1\r\nHost: x\r\n\r\n"])
    # then it is answered
    assert _answers(probe) == [(200, {"status": "ok"})]
