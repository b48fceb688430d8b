"""Fixtures of the fault tests: servers of their own, and the whole stack pointed at them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from shared import embedded
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings
from tests.conftest import free_port
from tests.e2e.conftest import Receiver, Stack, running_stack
from tests.faults.services import PgCluster, server_dir

# Short schedules, so a fault and its recovery fit in seconds.
FAST_ENV = {
    "API_WORKERS": "1",
    "API_THREADS": "4",
    "WORKER_CONCURRENCY": "2",
    "DISPATCHER_CONCURRENCY": "4",
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_SCHEDULE_S": "0,0.5,1,1.5,2,2,2,2,2,2",
    "WEBHOOK_JITTER": "0",
    "WEBHOOK_TIMEOUT_S": "5",
    "PORTAL_RETRY_ATTEMPTS": "2",
    "PORTAL_RETRY_BASE_S": "0.2",
    "TASK_LEASE_S": "30",
    "TASK_HEARTBEAT_S": "1",
    "TASK_MAX_ATTEMPTS": "3",
    "PENDING_REQUEUE_AFTER_S": "4",
    "SCHEDULER_INTERVAL_S": "0.3",
    "DB_CONNECT_TIMEOUT_S": "2",
    "DB_POOL_TIMEOUT_S": "2",
    "DB_RETRY_S": "60",
    "READY_TIMEOUT_S": "2",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL of the test's own, migrated, that the test may stop and start."""
    with server_dir() as root:
        cluster = PgCluster(root / "pg")
        try:
            cluster.init().start()
            cluster.create_database()
            yield cluster
        finally:
            cluster.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[embedded.RedisServer]:
    server = embedded.RedisServer(tmp_path / "redis", free_port()).start()
    yield server
    server.stop()


@contextmanager
def launch_stack(
    tmp_path: Path, settings: Settings, *, database_url: str, redis_url: str, **env: str
) -> Iterator[tuple[Runtime, Stack]]:
    """`understudy run` (every Procfile process) on the given servers, stopped on exit, and a
    runtime on the same servers for setting up accounts and reading rows."""
    api_port, sandbox_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    full_env = {
        **os.environ,
        **FAST_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # The tests' run dir holds the encryption key the test runtime encrypts credentials with.
        "UNDERSTUDY_RUN_DIR": str(settings.run_dir),
        "PORT": str(api_port),
        "SANDBOX_PORT": str(sandbox_port),
        "SANDBOX_URL": sandbox_url,
        **env,
    }
    rt = build_runtime(settings.replace(database_url=database_url, redis_url=redis_url))
    try:
        with running_stack(full_env, tmp_path / "stack.log", api_port, sandbox_url) as stack:
            yield rt, stack
    finally:
        rt.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def new_account(rt: Runtime, webhook_url: str | None = None):
    """An account with the sandbox's credentials, made the way `understudy accounts create` does."""
    from shared.accounts import provision_account
    from tests.conftest import Account, sandbox_login

    with rt.pool.connection() as conn:
        made = provision_account(
            conn,
            rt.fernet,
            "Fault Clinic",
            webhook_url=webhook_url,
            logins={"sandbox": sandbox_login()},
        )
    return Account(made.account_id, made.api_key, made.webhook_secret)


JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
FINAL = ("completed", "completed_with_issues", "failed", "canceled")


def create_check(stack: Stack, account) -> int:
    """An eligibility check created through the stack's API: its id."""
    response = requests.post(
        f"{stack.api_url}/tasks",
        json={"type": "check_eligibility", "data": JANE},
        headers=account.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def task_rows(rt: Runtime) -> list[dict]:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT id, status, attempts FROM tasks ORDER BY id").fetchall()
