"""Redis behind Sentinel: the primary killed during a batch; nothing lost, nothing restarted."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.faults.conftest import FINAL, create_check, launch_stack, new_account, task_rows
from tests.faults.services import RedisSentinelSet

pytestmark = pytest.mark.faults


@pytest.fixture
def sentinels(tmp_path):
    group = RedisSentinelSet(tmp_path / "sentinel").start()
    yield group
    group.close()


def test_killing_the_redis_primary_loses_nothing_and_needs_no_restart(
    tmp_path, settings, pg_cluster, sentinels, receiver
):
    env = {"REDIS_SENTINEL_MASTER": sentinels.MASTER}
    with launch_stack(
        tmp_path, settings, database_url=pg_cluster.url(), redis_url=sentinels.url, **env
    ) as (rt, stack):
        # given a batch of tasks on a slow portal, some running, some queued in Redis
        account = new_account(rt, receiver.url)
        stack.sandbox_faults(slow_s=0.3, modal="never")
        ids = [create_check(stack, account) for _ in range(3)]
        deadline = time.monotonic() + 60
        while not any(t["status"] == "running" for t in task_rows(rt)):
            assert time.monotonic() < deadline, "no task ever ran"
            time.sleep(0.2)

        # when the primary dies, tasks keep coming during the failover and after it
        sentinels.kill_primary()
        killed_at = time.monotonic()
        ids += [create_check(stack, account) for _ in range(2)]
        failover_s = sentinels.wait_for_failover()
        ids += [create_check(stack, account) for _ in range(2)]
        ready = requests.get(f"{stack.api_url}/readyz", timeout=10)
        stack.sandbox_faults(slow_s=0)

        # then every task completes once, on the same processes, and its webhook arrives once
        deadline = time.monotonic() + 150
        rows = task_rows(rt)
        while not all(t["status"] in FINAL for t in rows):
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
            rows = task_rows(rt)
        recovered_s = time.monotonic() - killed_at
        assert sorted(t["id"] for t in rows) == sorted(ids)
        assert {t["status"] for t in rows} == {"completed"}, rows
        receiver.wait_for(len(ids), timeout_s=60)
        time.sleep(2)
        delivered = [json.loads(r["body"])["data"]["id"] for r in receiver.requests]
        assert sorted(delivered) == sorted(ids)
        # and the API reads the new primary through the sentinels, without a restart
        assert ready.status_code == 200, ready.text
        assert stack.process.poll() is None
        print(
            f"\nRedis primary killed: {len(ids)} tasks, lost 0, duplicated 0, failover"
            f" {failover_s:.1f} s, every task done {recovered_s:.1f} s after the kill,"
            f" attempts {sorted(t['attempts'] for t in rows)}"
        )
