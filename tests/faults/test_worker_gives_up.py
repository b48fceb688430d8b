"""Postgres down longer than DB_RETRY_S under a running task: the worker gives its claim up
without a status, and the task is retried, its lost attempt not counted, and completes once."""

from __future__ import annotations

import dataclasses
import threading
import time

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from api import create_app
from scheduler.loop import OutageWatch, tick_once
from shared.runtime import build_runtime
from tests.faults.conftest import new_account
from worker import runner
from worker.browser import BrowserPool, new_driver

pytestmark = [pytest.mark.faults, pytest.mark.browser]

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _row(rt, task_id: int) -> dict:
    # A connection of the test's own: the pool under test may still be reconnecting.
    with psycopg.connect(rt.database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT status, attempts, notes, claimed_by,"
            " (SELECT count(*) FROM webhook_messages m WHERE m.task_id = t.id) AS webhooks"
            " FROM tasks t WHERE id = %s",
            (task_id,),
        ).fetchone()


def test_a_worker_cut_off_from_postgres_gives_the_task_back_instead_of_failing_it(
    settings, pg_cluster, redis_server, sandbox_url
):
    rt = build_runtime(
        settings.replace(
            database_url=pg_cluster.url(),
            redis_url=redis_server.url,
            sandbox_url=sandbox_url,
            db_retry_s=3.0,
            db_pool_timeout_s=1.0,
            task_lease_s=6.0,
        )
    )
    browsers = BrowserPool(
        lambda: new_driver(
            chromium_path=settings.chromium_path, chromedriver_path=settings.chromedriver_path
        )
    )
    try:
        # given a task running on a slow portal
        requests.post(
            f"{sandbox_url}/__sandbox/faults", json={"slow_s": 0.5, "modal": "never"}, timeout=5
        ).raise_for_status()
        account = new_account(rt)
        client = create_app(runtime=rt).test_client()
        created = client.post(
            "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
        )
        task_id = created.get_json()["id"]
        worker = threading.Thread(
            target=runner.run_task, args=(rt, task_id), kwargs={"browsers": browsers}
        )
        worker.start()
        deadline = time.monotonic() + 60
        while _row(rt, task_id)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)

        # when Postgres stops for longer than the worker retries its writes
        pg_cluster.stop("fast")
        worker.join(timeout=60)
        assert not worker.is_alive(), "the worker hung instead of giving the task up"
        # (the scheduler, ticking all along, cannot reach it either, up to its last tick before
        # Postgres is back)
        watch = OutageWatch(rt.settings.task_lease_s)
        assert tick_once(rt, watch) is None
        pg_cluster.start()

        # then the task has no status of our making: still claimed, no note, no webhook
        row = _row(rt, task_id)
        assert row["status"] == "running" and row["notes"] is None and row["webhooks"] == 0, row

        # and once the lease runs out the scheduler retries it, giving the lost attempt back
        # (the outage was ours), and it completes once
        requests.post(f"{sandbox_url}/__sandbox/faults", json={"slow_s": 0}, timeout=5)
        fast = dataclasses.replace(rt, settings=rt.settings.replace(db_pool_timeout_s=5.0))
        deadline = time.monotonic() + 30
        while not ((report := tick_once(fast, watch)) and report.leases_recovered):
            assert time.monotonic() < deadline, _row(rt, task_id)
            time.sleep(0.5)
        assert report.leases_forgiven == 1
        runner.run_task(fast, task_id, browsers=browsers)
        row = _row(rt, task_id)
        assert (row["status"], row["attempts"], row["webhooks"]) == ("completed", 1, 1), row
    finally:
        browsers.close()
        rt.close()
