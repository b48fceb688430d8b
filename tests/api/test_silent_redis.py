"""A Redis that accepts connections and never answers (a hung server, a host gone from the
network behind a proxy): creations still answer 200, and a process waits on it once in a while,
not once per request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from api import create_app, rate_limits
from shared import celery
from shared.runtime import build_runtime
from shared.tasks import TaskStatus

CLAIM = {"type": "check_claim_status", "data": "claim_number: CLM-PAID-0001"}


class SilentRedis:
    """A TCP server that accepts every connection, reads what is sent, and answers nothing."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.commands = 0  # the chunks of commands received, all connections together
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                if not conn.recv(65536):
                    return
            except OSError:
                return
            self.commands += 1

    def close(self) -> None:
        self._server.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentRedis]:
    server = SilentRedis()
    yield server
    server.close()


def test_a_redis_that_never_answers_is_waited_on_once_not_per_creation(
    settings, account, silent, monkeypatch
):
    # given an API whose Redis (rate limits and queue) accepts connections and never answers,
    # and quiet spells longer than this test (a loaded machine must not end them early)
    monkeypatch.setattr(rate_limits, "RETRY_REDIS_AFTER_S", 600.0)
    monkeypatch.setattr(celery, "SEND_QUIET_S", 600.0)
    hung = settings.replace(redis_url=f"redis://127.0.0.1:{silent.port}/0", rate_limit="100/second")
    rt = build_runtime(hung)
    try:
        client = create_app(runtime=rt).test_client()
        # when a task is created, then it is stored and answered, left for the scheduler
        first = client.post("/tasks", json=CLAIM, headers=account.headers)
        assert first.status_code == 200 and first.get_json()["status"] == TaskStatus.PENDING
        asked = silent.commands
        assert asked >= 2  # the rate limits' script, and the message: one try each
        # and the next creations are answered without asking the silent Redis again
        for _ in range(5):
            again = client.post("/tasks", json=CLAIM, headers=account.headers)
            assert again.status_code == 200
        assert silent.commands == asked
        with rt.pool.connection() as conn:
            statuses = conn.execute(
                "SELECT status FROM tasks WHERE account_id = %s", (account.id,)
            ).fetchall()
        assert [row["status"] for row in statuses] == ["pending"] * 6  # none lost, all waiting
    finally:
        rt.close()
