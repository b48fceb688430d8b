"""The API as production serves it: gunicorn with api/gunicorn_conf.py and our worker class.

Hostile requests that gunicorn itself refuses answer in the API's JSON shape; alias bombs sent in
parallel no longer hold the workers, so /healthz keeps answering; a request that never ends is
stopped at API_REQUEST_TIMEOUT_S with a JSON 503 and the worker goes on serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from tests.api.test_console import audit_rows, form_token
from tests.api.test_sign_in_cost import make_user
from tests.conftest import free_port
from tests.scheduler.test_purge_apart import _waiting_on

ROOT = Path(__file__).resolve().parents[2]

# Two alias bombs like the ones that stalled the API: a few hundred bytes that expand to
# 9**8 (43 million) nodes.
BOMBS = [
    "\n".join(
        [f'a: &a ["{c}","{c}","{c}","{c}","{c}","{c}","{c}","{c}","{c}"]']
        + [
            f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]"
            for p, n in zip("abcdefg", "bcdefgh", strict=True)
        ]
    )
    for c in "xy"
]


class Gunicorn:
    """gunicorn serving ``app`` on a free port with the API's config, stopped by :meth:`stop`."""

    def __init__(self, app: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "PORT": str(self.port), "API_HOST": "127.0.0.1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", app],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or slow on a loaded machine
                time.sleep(0.2)
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode()[-3000:])
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def raw(self, data: bytes) -> tuple[int, dict[str, str], dict]:
        """Send bytes as they are; the status, headers and JSON body of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers, json.loads(body)

    def stop(self, grace_s: float = 20) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stderr.close()


def serve_api(services: dict[str, str], **settings: str) -> Iterator[Gunicorn]:
    """The API under gunicorn on the session's Postgres and Redis, with these settings (named
    as in the environment), for a module's fixture to yield; stopped after."""
    env = {
        "DATABASE_URL": services["database_url"],
        "REDIS_URL": services["redis_url"],
        "UNDERSTUDY_RUN_DIR": services["run_dir"],
        **settings,
    }
    server = Gunicorn("api:create_app()", env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_server(services) -> Iterator[Gunicorn]:
    # One server for the module: it only reads what each test's own account wrote. (The
    # parallel validations below may all land in one process: room for four parses.)
    yield from serve_api(services, API_WORKERS="2", API_THREADS="4", MAX_PARSES_IN_FLIGHT="4")


def _assert_json_error(status: int, headers: dict, body: dict, expected: int, code: str) -> None:
    assert status == expected, (status, body)
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_alias_bombs_in_parallel_leave_healthz_answering(api_server, account):
    # given a real gunicorn serving the API with the production config
    def validate(text: str) -> tuple[int, dict, float]:
        t0 = time.monotonic()
        response = requests.post(
            f"{api_server.url}/sops/validate",
            data=text,
            headers={**account.headers, "Content-Type": "application/yaml"},
            timeout=60,
        )
        return response.status_code, response.json(), time.monotonic() - t0

    # when two alias bombs are sent in parallel, twice over, and /healthz is asked meanwhile
    with ThreadPoolExecutor(4) as pool:
        bombs = [pool.submit(validate, text) for text in BOMBS * 2]
        t0 = time.monotonic()
        health = requests.get(f"{api_server.url}/healthz", timeout=30)
        health_s = time.monotonic() - t0
        # a request that needs a thread, and the database, too
        t0 = time.monotonic()
        listed = requests.get(f"{api_server.url}/tasks", headers=account.headers, timeout=30)
        listed_s = time.monotonic() - t0
        answers = [bomb.result() for bomb in bombs]

    # then every bomb is refused by its node count, and /healthz answered quickly (it took
    # 30 s, the gunicorn timeout, before)
    for status, body, _seconds in answers:
        assert status == 422, body
        assert body["error"]["code"] == "limit_exceeded"
        assert body["error"]["details"]["limit"] == "MAX_SOP_NODES"
    assert health.status_code == 200 and listed.status_code == 200
    assert health_s < 5, health_s
    assert listed_s < 5, listed_s
    assert max(seconds for _, _, seconds in answers) < 10
    # and the server names no version
    assert not any(ch.isdigit() for ch in health.headers.get("Server", ""))


def test_a_pattern_that_backtracks_for_hours_leaves_the_api_answering(api_server, account):
    # given a type whose instructions test a text input against a pattern that, in a
    # backtracking engine, takes time doubling with each character of the input
    sop = (
        "task_type: read_note\ntitle: Read a note\n"
        "description: \"Plain? {{ note is matching('^(a+)+$') }}\"\n"
        "portal: {name: sandbox}\ninputs: [{name: note, format: text, required: true}]\n"
        "steps: [{login: {url: /dashboard}}]\noutcomes: [{status: completed, notes: ok}]\n"
    )
    put = requests.put(f"{api_server.url}/sops/read_note", json={"sop": sop},
                       headers=account.headers, timeout=30)  # fmt: skip
    assert put.status_code == 201, put.json()

    # when a client sends 64 a's and a '!' (2**64 ways to fail: centuries, in one C call that
    # holds the process's GIL), while /healthz is asked too
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(
            requests.post, f"{api_server.url}/tasks",
            json={"type": "read_note", "data": {"note": "a" * 64 + "!"}},
            headers=account.headers, timeout=30,
        )  # fmt: skip
        health = requests.get(f"{api_server.url}/healthz", timeout=30)
        created = sent.result()

    # then the task is created with its instructions filled, and the API kept answering
    assert created.status_code == 200, created.text
    assert "Plain? False" in created.json()["instructions"]
    assert health.status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "limit"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request", None),
        (b"GET /tasks HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request", None),
        (b"GET /" + b"a" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long",
         {"limit": "MAX_URL_BYTES", "max": 4094}),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "headers_too_large", {"limit": "MAX_HEADER_BYTES", "max": 8190}),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
         + b"\r\n", 431, "headers_too_large", {"limit": "MAX_HEADERS", "max": 100}),
    ],
    ids=["request-line", "http-version", "uri-too-long", "header-too-large", "too-many-headers"],
)  # fmt: skip
def test_requests_gunicorn_refuses_answer_json(api_server, request_bytes, status, code, limit):
    status_got, headers, body = api_server.raw(request_bytes)
    _assert_json_error(status_got, headers, body, status, code)
    # a limit's answer names the setting and its value, as every other limit's does
    assert body["error"]["details"] == limit
    assert len(headers["X-Request-Id"]) == 32


def test_malformed_chunked_body_is_a_400(api_server, account):
    body = b"ZZ\r\n{}\r\n0\r\n\r\n"
    request = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: " + account.headers["Authorization"].encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    status, headers, answer = api_server.raw(request)
    assert status == 400, answer
    assert answer["error"]["code"] in ("malformed_body", "bad_request")
    assert headers["Cache-Control"] == "no-store"


def test_a_request_that_never_ends_is_stopped_with_a_json_503():
    # given the worker class serving an app whose /spin never returns, with a 1 s bound
    env = {"API_REQUEST_TIMEOUT_S": "1", "API_WORKERS": "1", "API_THREADS": "2"}
    server = Gunicorn("tests.api.spin_app:app", env)
    try:
        # when a client asks for /spin, on each of the worker's two threads in turn
        for _ in range(2):
            t0 = time.monotonic()
            response = requests.get(f"{server.url}/spin", timeout=30)
            # then it gets a JSON 503 naming the limit, near the deadline
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "request_timeout"
            assert response.json()["error"]["details"]["limit"] == "API_REQUEST_TIMEOUT_S"
            assert time.monotonic() - t0 < 15
        # and the same single worker still serves, on its threads
        assert requests.get(f"{server.url}/ping", timeout=5).status_code == 200
    finally:
        server.stop(grace_s=2)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def test_a_worker_aborted_by_its_timeout_answers_json():
    # given one worker busy with a request that never ends, far from its own deadline
    env = {"API_REQUEST_TIMEOUT_S": "120", "API_WORKERS": "1", "API_THREADS": "2"}
    server = Gunicorn("tests.api.spin_app:app", env)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(requests.get, f"{server.url}/spin", timeout=30)
            time.sleep(1.0)
            # when the arbiter aborts the worker, as its timeout does (SIGABRT)
            (worker,) = _children(server.process.pid)
            os.kill(worker, signal.SIGABRT)
            response = pending.result()
        # then the waiting client gets the JSON error, not a cut connection
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "request_timeout"
    finally:
        server.stop(grace_s=1)  # the aborted worker's spinning thread never ends by itself


def test_a_refused_sign_in_is_answered_before_its_audit_entry_is_written(
    api_server, runtime, account
):
    # given a console user of the account, and its audit log locked by another transaction
    make_user(runtime, account.id, "the password!", "late@clinic.test")
    browser = requests.Session()
    login = f"{api_server.url}/console/login"
    token = form_token(browser.get(login, timeout=20).text)
    with psycopg.connect(runtime.database_url) as holder:
        holder.execute("LOCK TABLE audit_log IN SHARE MODE")
        # when a wrong password is sent for that known email
        refused = browser.post(
            login,
            data={"email": "late@clinic.test", "password": "wrong!", "csrf_token": token},
            timeout=20,
        )
        # then the refusal is answered while its audit entry still waits for the lock, so the
        # answer takes no longer than an unknown email's, which has no entry to write
        assert refused.status_code == 401
        assert "The email or the password is wrong." in refused.text
        deadline = time.monotonic() + 30
        while _waiting_on(runtime, holder) != 1:
            assert time.monotonic() < deadline, (
                "the audit entry was never written (nor waited for the lock)"
            )
            time.sleep(0.05)
        holder.rollback()
    # and once the lock is let go, the entry is written
    deadline = time.monotonic() + 30
    while ("user.sign_in_failed", account.id) not in _audit_actions(runtime):
        assert time.monotonic() < deadline, audit_rows(runtime)
        time.sleep(0.05)


def _audit_actions(runtime) -> list[tuple[str, int]]:
    return [(row["action"], row["account_id"]) for row in audit_rows(runtime)]
