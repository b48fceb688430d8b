"""Redis behind Sentinel with passwords: the servers' in REDIS_URL, the sentinels' their own."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.faults.conftest import launch_stack, new_account
from tests.faults.services import RedisSentinelSet

pytestmark = pytest.mark.faults

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
SERVERS_PASSWORD = "servers-pass-7f3a9e"
SENTINELS_PASSWORD = "sentinels-pass-91c2d4"


@pytest.fixture
def guarded(tmp_path):
    group = RedisSentinelSet(
        tmp_path / "sentinel", password=SERVERS_PASSWORD, sentinel_password=SENTINELS_PASSWORD
    ).start()
    yield group
    group.close()


def _failed_sign_ins(api_url: str, count: int) -> list[int]:
    browser = requests.Session()
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', browser.get(f"{api_url}/console/login").text
    )
    assert token
    form = {"email": "nobody@clinic.test", "password": "wrong", "csrf_token": token.group(1)}
    return [
        browser.post(f"{api_url}/console/login", data=form, timeout=10).status_code
        for _ in range(count)
    ]


def test_every_process_works_through_sentinels_and_servers_that_require_passwords(
    tmp_path, settings, pg_cluster, guarded, receiver
):
    # given sentinels that require a password, monitoring servers that require another: the
    # servers' in REDIS_URL, the sentinels' in REDIS_SENTINEL_PASSWORD
    assert f":{SERVERS_PASSWORD}@" in guarded.url
    env = {
        "REDIS_SENTINEL_MASTER": guarded.MASTER,
        "REDIS_SENTINEL_PASSWORD": SENTINELS_PASSWORD,
        "RATE_LIMIT": "4/minute",
        "CONSOLE_LOGIN_RATE_LIMIT": "2/minute",
    }
    own = settings.replace(
        redis_sentinel_master=guarded.MASTER, redis_sentinel_password=SENTINELS_PASSWORD
    )
    with launch_stack(
        tmp_path, own, database_url=pg_cluster.url(), redis_url=guarded.url, **env
    ) as (rt, stack):
        account = new_account(rt, receiver.url)
        # when a client creates a task, then reads its tasks until over its rate limit
        task = stack.post_task(account, "check_eligibility", JANE)
        reads = [
            requests.get(f"{stack.api_url}/tasks", headers=account.headers, timeout=10)
            for _ in range(4)
        ]
        # and someone fails to sign in to the console three times
        sign_ins = _failed_sign_ins(stack.api_url, 3)

        # then the task runs on the workers, who take it from the master, and its webhook arrives
        deadline = time.monotonic() + 90
        while (status := rt_status(rt, task["id"])) not in ("completed", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status == "completed"
        receiver.wait_for(1, timeout_s=30)
        # and the API's rate limit and the console's sign-in throttle count in that Redis
        assert [r.status_code for r in reads] == [200, 200, 200, 429]
        assert sign_ins == [401, 401, 429]
        ready = requests.get(f"{stack.api_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    # and neither password is written in any process's log
    logged = stack.log.read_text()
    assert "POST /tasks" in logged
    assert SERVERS_PASSWORD not in logged and SENTINELS_PASSWORD not in logged


def rt_status(rt, task_id: int) -> str:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT status FROM tasks WHERE id = %s", (task_id,)).fetchone()[
            "status"
        ]
