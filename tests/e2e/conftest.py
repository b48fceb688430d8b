"""The whole stack as `make run` starts it: `understudy run` with every Procfile process.

It points at the session's Postgres and Redis instead of the embedded defaults, on free ports,
with short leases and a compressed webhook schedule so failures show within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from flask import Flask, request

from shared import embedded
from shared.db import migrate
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings
from tests.conftest import ServedApp, empty_tables, free_port

ROOT = Path(__file__).resolve().parents[2]


class Stack:
    def __init__(
        self,
        api_url: str,
        sandbox_url: str,
        process: subprocess.Popen,
        log: Path,
        workspace_dir: Path | None = None,
    ):
        self.api_url = api_url
        self.sandbox_url = sandbox_url
        self.process = process
        self.log = log
        self.workspace_dir = workspace_dir  # where the workers keep task and browser folders

    def sandbox_faults(self, **faults: object) -> None:
        requests.post(
            f"{self.sandbox_url}/__sandbox/faults", json=faults, timeout=5
        ).raise_for_status()

    def post_task(self, account, task_type: str, data: str) -> dict:
        """POST /tasks as a client would; the created task."""
        response = requests.post(
            f"{self.api_url}/tasks",
            json={"type": task_type, "data": data},
            headers=account.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def kill_worker_running(self, runtime: Runtime, task_id: int, timeout_s: float = 60) -> None:
        """SIGKILL the agent process that claimed the task, as a crash or an OOM kill would."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with runtime.pool.connection() as conn:
                row = conn.execute(
                    "SELECT status, claimed_by FROM tasks WHERE id = %s", (task_id,)
                ).fetchone()
            if row["status"] == "running" and row["claimed_by"]:
                # claimed_by is "host:pid:nonce"
                os.kill(int(row["claimed_by"].split(":")[1]), signal.SIGKILL)
                return
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} was never claimed")

    def wait_for_task(
        self, account, task_id: int, statuses: set[str], timeout_s: float = 90
    ) -> dict:
        deadline = time.monotonic() + timeout_s
        task: dict = {}
        while time.monotonic() < deadline:
            task = requests.get(
                f"{self.api_url}/tasks/{task_id}", headers=account.headers, timeout=5
            ).json()
            if task["status"] in statuses:
                return task
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} stayed {task.get('status')}: {task}")


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the stack exited early:\n{log.read_text()[-4000:]}")
        try:
            requests.get(url, timeout=3)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="package")
def e2e_services(services: dict[str, str]) -> dict[str, str]:
    """A database and a Redis db of the stack's own, so its scheduler and workers never see
    another test's rows or messages."""
    database_url, _server = embedded.start_postgres(
        Path(services["pg_dir"]), database="understudy_e2e", stop_on_exit=True
    )
    migrate(database_url)
    redis_url = services["redis_url"].rsplit("/", 1)[0] + "/1"
    return {**services, "database_url": database_url, "redis_url": redis_url}


@pytest.fixture(scope="package")
def e2e_runtime(settings: Settings, e2e_services: dict[str, str]) -> Iterator[Runtime]:
    rt = build_runtime(
        settings.replace(
            database_url=e2e_services["database_url"], redis_url=e2e_services["redis_url"]
        ),
        pool_size=4,
    )
    yield rt
    rt.close()


@pytest.fixture
def runtime(e2e_runtime: Runtime) -> Runtime:
    """The stack's database, emptied for the test. Its Redis is left alone: the stack's
    workers are listening on it."""
    empty_tables(e2e_runtime.database_url)
    return e2e_runtime


@pytest.fixture(scope="package")
def stack(
    e2e_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    api_port, sandbox_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {
        **os.environ,
        "DATABASE_URL": e2e_services["database_url"],
        "REDIS_URL": e2e_services["redis_url"],
        "UNDERSTUDY_RUN_DIR": e2e_services["run_dir"],
        "WORKSPACE_DIR": str(Path(e2e_services["run_dir"]) / "work"),
        "PORT": str(api_port),
        "API_WORKERS": "1",
        "SANDBOX_PORT": str(sandbox_port),
        "SANDBOX_URL": sandbox_url,
        "WORKER_CONCURRENCY": "2",
        "DISPATCHER_CONCURRENCY": "8",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SCHEDULE_S": "0,0.5,1,1.5",
        "WEBHOOK_JITTER": "0",
        "WEBHOOK_TIMEOUT_S": "5",
        "PORTAL_RETRY_ATTEMPTS": "2",
        "PORTAL_RETRY_BASE_S": "0.2",
        "PORTAL_PROBE_AFTER_S": "0.5",
        "TASK_LEASE_S": "6",
        "TASK_HEARTBEAT_S": "1",
        "TASK_MAX_ATTEMPTS": "2",
        "PENDING_REQUEUE_AFTER_S": "5",
        "SCHEDULER_INTERVAL_S": "0.3",
        "RETENTION_INTERVAL_S": "1",  # test_retention.py; only tasks ended 90 days ago go
        "LOG_LEVEL": "INFO",
        "CONSOLE_LOGIN_RATE_LIMIT": "200/minute",  # tests/e2e/test_console.py signs in often
        # test_contract_stack.py's walk through every operation sends about a hundred requests
        # a second from one account, the default's limit, when the machine is idle.
        "RATE_LIMIT": "1000/second;30000/minute",
        "LOG_FORMAT": "json",  # production's format, which the log tests read
    }
    log = tmp_path_factory.mktemp("stack") / "stack.log"
    with running_stack(env, log, api_port, sandbox_url) as stack:
        yield stack


@contextmanager
def running_stack(
    env: dict[str, str], log: Path, api_port: int, sandbox_url: str
) -> Iterator[Stack]:
    """`understudy run` with this environment, up and answering; Ctrl-C'd (then killed) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "understudy"), "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workspace = Path(env["WORKSPACE_DIR"]) if env.get("WORKSPACE_DIR") else None
    stack = Stack(f"http://127.0.0.1:{api_port}", sandbox_url, process, log, workspace)
    try:
        _wait_http(f"{stack.api_url}/healthz", process, log)
        _wait_http(f"{sandbox_url}/__sandbox/faults", process, log)
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def e2e(stack: Stack, runtime: Runtime) -> Stack:
    """The stack, with empty tables and the sandbox reset to its defaults (hurdles on)."""
    requests.post(f"{stack.sandbox_url}/__sandbox/reset", timeout=5).raise_for_status()
    return stack


class Receiver:
    """A webhook receiver on loopback that answers with a scripted list of statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.arrived = threading.Condition()
        app = Flask("receiver")

        @app.post("/hook")
        def hook():
            with self.arrived:
                self.requests.append(
                    {"headers": dict(request.headers), "body": request.get_data(as_text=True)}
                )
                status = self.script.pop(0) if self.script else 200
                self.arrived.notify_all()
            return {"ok": status < 300}, status

        self._served = ServedApp(app)
        self.url = f"{self._served.url}/hook"

    def wait_for(self, count: int, timeout_s: float = 60) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)
            assert len(self.requests) >= count, f"got {len(self.requests)} of {count} webhooks"
            return list(self.requests)

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self._served.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
