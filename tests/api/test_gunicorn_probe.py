"""Under gunicorn, /healthz is answered at once even while every request thread is busy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gunicorn_without_database(tmp_path):
    """The `web` process as the Procfile runs it, two threads, its database unreachable."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/understudy",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "UNDERSTUDY_RUN_DIR": str(tmp_path),
        "PORT": str(port),
        "API_WORKERS": "1",
        "API_THREADS": "2",
        "DB_POOL_TIMEOUT_S": "4",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:api.gunicorn_conf",
         "api:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/healthz", timeout=1)
            break
        except requests.RequestException:
            assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def test_healthz_answers_from_memory_while_every_thread_waits_on_the_database(
    gunicorn_without_database,
):
    url = gunicorn_without_database
    answers: list[tuple[int, float, dict]] = []

    def create() -> None:
        t0 = time.monotonic()
        response = requests.post(
            f"{url}/tasks", json={"type": "check_eligibility"},
            headers={"Authorization": "Bearer us_123456789012_x"}, timeout=60,
        )  # fmt: skip
        answers.append((response.status_code, time.monotonic() - t0, response.json()))

    # given six requests waiting on an unreachable database, more than the two threads
    clients = [threading.Thread(target=create) for _ in range(6)]
    for client in clients:
        client.start()
    time.sleep(0.5)

    # when a liveness probe and an ordinary request arrive
    t0 = time.monotonic()
    probe = requests.get(f"{url}/healthz", timeout=30)
    probe_s = time.monotonic() - t0
    t0 = time.monotonic()
    other = requests.get(f"{url}/no-such-page", timeout=60)
    other_s = time.monotonic() - t0
    for client in clients:
        client.join()

    # then the probe is answered at once, while the ordinary request waited for a thread
    assert probe.status_code == 200 and probe.json() == {"status": "ok"}
    assert probe_s < 1.5, probe_s
    assert other.status_code == 404 and other_s > 3, other_s
    # and every waiting request got a JSON 503 within its bounded wait, not a 500 or a hang
    assert [status for status, _, _ in answers] == [503] * 6
    assert all(body["error"]["code"] == "service_unavailable" for _, _, body in answers)
