"""A Postgres that stops answering (frozen, not down): no API request waits on it past
API_REQUEST_TIMEOUT_S."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest
import requests

from shared.runtime import build_runtime
from tests.api.test_gunicorn import Gunicorn
from tests.faults.conftest import new_account

pytestmark = pytest.mark.faults


def _server_pids(data_dir: Path) -> list[int]:
    """The postmaster and every process it started (its backends included)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, sig)


def test_a_frozen_postgres_holds_no_request_past_its_deadline(settings, pg_cluster, redis_server):
    rt = build_runtime(settings.replace(database_url=pg_cluster.url(), redis_url=redis_server.url))
    account = new_account(rt)
    rt.close()
    server = Gunicorn(
        "api:create_app()",
        {
            "DATABASE_URL": pg_cluster.url(),
            "REDIS_URL": redis_server.url,
            "UNDERSTUDY_RUN_DIR": str(settings.run_dir),
            "API_REQUEST_TIMEOUT_S": "3",
            "API_WORKERS": "1",
        },
    )
    pids: list[int] = []
    thawed = threading.Event()
    timer = None
    try:
        # given an API that has served the account (its connections open, its key known)
        listed = requests.get(f"{server.url}/tasks", headers=account.headers, timeout=30)
        assert listed.status_code == 200, listed.text
        # when every Postgres process freezes (its sockets stay open; nothing answers), for
        # far longer than a request may run
        pids = _server_pids(pg_cluster.data_dir)
        _signal_all(pids, signal.SIGSTOP)
        timer = threading.Timer(60, lambda: (_signal_all(pids, signal.SIGCONT), thawed.set()))
        timer.start()
        answer = requests.get(f"{server.url}/tasks", headers=account.headers, timeout=120)
        answered_frozen = not thawed.is_set()
        # then the request is answered 503 while Postgres is still frozen, not when it thaws
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] in ("request_timeout", "service_unavailable")
        assert answered_frozen, "the request was answered only once Postgres answered again"
    finally:
        if timer is not None:
            timer.cancel()
        _signal_all(pids, signal.SIGCONT)
        thawed.set()
        server.stop()
