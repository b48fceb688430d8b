"""A plain Redis restarted under a running task: every process keeps running, nothing is lost."""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import FINAL, create_check, launch_stack, new_account, task_rows

pytestmark = [pytest.mark.faults, pytest.mark.browser]


def test_a_redis_restart_under_a_running_task_stops_no_process_and_loses_nothing(
    tmp_path, settings, pg_cluster, redis_server, receiver
):
    with launch_stack(
        tmp_path, settings, database_url=pg_cluster.url(), redis_url=redis_server.url
    ) as (rt, stack):
        # given a task running on a slow portal: its message taken and not yet acknowledged
        account = new_account(rt, receiver.url)
        stack.sandbox_faults(slow_s=0.5, modal="never")
        ids = [create_check(stack, account)]
        deadline = time.monotonic() + 60
        while not any(t["status"] == "running" for t in task_rows(rt)):
            assert time.monotonic() < deadline, "the task never ran"
            time.sleep(0.2)

        # when Redis stops for a few seconds, and starts again with what it had written
        redis_server.stop()
        ids.append(create_check(stack, account))  # taken while Redis is away: left to the scheduler
        time.sleep(5)
        redis_server.start()
        stack.sandbox_faults(slow_s=0)
        ids.append(create_check(stack, account))

        # then every process still runs, every task completes once, and its webhook arrives once
        deadline = time.monotonic() + 150
        rows = task_rows(rt)
        while not all(t["status"] in FINAL for t in rows):
            assert time.monotonic() < deadline, (rows, stack.process.poll())
            time.sleep(0.5)
            rows = task_rows(rt)
        assert stack.process.poll() is None, "a process stopped, and the stack with it"
        assert {t["status"] for t in rows} == {"completed"}, rows
        receiver.wait_for(len(ids), timeout_s=60)
        time.sleep(2)
        delivered = [json.loads(r["body"])["data"]["id"] for r in receiver.requests]
        assert sorted(delivered) == sorted(ids)
