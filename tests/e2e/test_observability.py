"""What an on-call engineer reads after a real run: /metrics agrees with the rows, and the JSON
logs name each task and request, say why a task failed without a traceback, and hold no secret.

One workload through the whole stack (`understudy run`): two eligibility checks (completed, and
member not found), a task typing a sensitive input, a task whose stored password is wrong, and a
webhook receiver that refuses its first delivery.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared.accounts import Credentials, create_account, create_api_key, put_credentials
from shared.webhooks import create_endpoint
from tests.conftest import Account, empty_tables
from tests.e2e.conftest import Receiver
from tests.e2e.test_secrets import CREATE_USER_SOP, NEW_PASSWORD
from tests.scrape import Samples, delta, parse, value

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
NOBODY = "member_id: W300000003\npatient: Pat Nobody\nDOB: 1970-01-01"
WRONG_PASSWORD = "Wr0ng-Portal-Passw0rd"  # noqa: S105 - the point of the test
REQUEST_ID = "e2e-observed-0001"
COUNTERS = (
    "understudy_tasks_created_total",
    "understudy_tasks_finished_total",
    "understudy_webhook_attempts_total",
    "understudy_step_duration_seconds_count",
)


@dataclass
class Run:
    before: Samples
    after: Samples
    tasks: dict[str, dict]  # by name: the final task
    accounts: list[Account]
    log: str
    rows: dict[str, list[dict]]  # what the database holds after the run


def _account(rt, name: str, webhook_url: str, password: str) -> Account:
    with rt.pool.connection() as conn:
        account_id = create_account(conn, name)
        key = create_api_key(conn, account_id)
        secret = create_endpoint(conn, rt.fernet, account_id, webhook_url)
        creds = Credentials(SANDBOX_USERNAME, password, SANDBOX_TOTP_SECRET)
        put_credentials(conn, rt.fernet, account_id, "sandbox", creds)
    return Account(account_id, key, secret)


def _scrape(stack) -> Samples:
    response = requests.get(f"{stack.api_url}/metrics", timeout=15)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _quiet_scrape(stack) -> Samples:
    """A scrape once the counters stand still (an earlier test's stragglers have settled)."""
    last = _scrape(stack)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _scrape(stack)
        if all(value(now, name) == value(last, name) for name in COUNTERS):
            return now
        last = now
    return last


@pytest.fixture(scope="module")
def run(stack, e2e_runtime) -> Run:
    rt = e2e_runtime
    # The stack (and its log) is shared with the e2e tests before this one, whose task ids the
    # emptied tables hand out again: only what is written from here on is this run's.
    log_start = stack.log.stat().st_size if stack.log.exists() else 0
    empty_tables(rt.database_url)
    requests.post(f"{stack.sandbox_url}/__sandbox/reset", timeout=5).raise_for_status()
    receiver = Receiver()
    receiver.script = [503]  # the first delivery is refused, then retried
    try:
        clinic = _account(rt, "Observed Clinic", receiver.url, SANDBOX_PASSWORD)
        locked = _account(rt, "Wrong Password Clinic", receiver.url, WRONG_PASSWORD)
        put = requests.put(
            f"{stack.api_url}/sops/submit_appeal",
            data=CREATE_USER_SOP,
            headers={**clinic.headers, "Content-Type": "text/yaml"},
            timeout=10,
        )
        assert put.status_code == 201, put.text
        before = _quiet_scrape(stack)

        created = {
            "completed": (clinic, stack.post_task(clinic, "check_eligibility", JANE)),
            "not_found": (clinic, stack.post_task(clinic, "check_eligibility", NOBODY)),
            "sensitive": (
                clinic,
                stack.post_task(
                    clinic,
                    "submit_appeal",
                    f"new_username: jdoe\nnew_user_password: {NEW_PASSWORD}",
                ),
            ),
            "wrong_password": (locked, stack.post_task(locked, "check_eligibility", JANE)),
        }
        final = {"completed", "completed_with_issues", "failed", "canceled"}
        tasks = {
            name: stack.wait_for_task(account, task["id"], final, timeout_s=120)
            for name, (account, task) in created.items()
        }
        receiver.wait_for(len(tasks) + 1, timeout_s=60)  # every webhook, and the refused one
        traced = requests.get(
            f"{stack.api_url}/tasks/{tasks['completed']['id']}",
            headers={**clinic.headers, "X-Request-Id": REQUEST_ID},
            timeout=10,
        )
        assert traced.headers["X-Request-Id"] == REQUEST_ID
        _wait_delivered(rt, len(tasks))
        after = _quiet_scrape(stack)
    finally:
        receiver.close()
    rows = {
        "tasks": _rows(rt, "SELECT type, status FROM tasks"),
        "steps": _rows(rt, "SELECT id FROM trajectory_steps"),
        "attempts": _rows(rt, "SELECT status_code FROM webhook_attempts"),
    }
    with stack.log.open("rb") as whole:
        whole.seek(log_start)
        log = whole.read().decode(errors="replace")
    if log_start:  # the first line may be another's, cut in the middle
        log = log.partition("\n")[2]
    return Run(before, after, tasks, [clinic, locked], log, rows)


def _wait_delivered(rt, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with rt.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM webhook_messages WHERE status = 'delivered'"
            ).fetchone()
        if row["n"] >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the webhooks were not all delivered")


def _rows(rt, sql: str) -> list[dict]:
    with rt.pool.connection() as conn:
        return conn.execute(sql).fetchall()


def test_metrics_after_a_run_match_the_rows(run):
    before, after = run.before, run.after
    assert {t["status"] for t in run.tasks.values()} == {
        "completed",
        "completed_with_issues",
        "failed",
    }, run.tasks
    # tasks created and finished, by type and status, exactly as the tasks table has them
    tasks = run.rows["tasks"]
    assert len(tasks) == 4
    for task_type, n in Counter(t["type"] for t in tasks).items():
        assert delta(before, after, "understudy_tasks_created_total", type=task_type) == n
    for (task_type, status), n in Counter((t["type"], t["status"]) for t in tasks).items():
        got = delta(before, after, "understudy_tasks_finished_total", type=task_type, status=status)
        assert got == n, (task_type, status)
    assert delta(before, after, "understudy_tasks_created_total") == 4
    assert delta(before, after, "understudy_tasks_finished_total") == 4
    # one run per task, each waited once for its first claim
    assert delta(before, after, "understudy_task_duration_seconds_count") == 4
    assert delta(before, after, "understudy_task_wait_seconds_count") == 4
    # each run (a portal retry is one more) said which browser it got
    assert delta(before, after, "understudy_task_browsers_total") >= 4
    # every trajectory step observed once
    steps = len(run.rows["steps"])
    assert delta(before, after, "understudy_step_duration_seconds_count") == steps > 0
    # each by its kind: every task signed in, and no step went unnamed
    assert delta(before, after, "understudy_step_duration_seconds_count", kind="login") >= 4
    assert delta(before, after, "understudy_step_duration_seconds_count", kind="other") == 0
    # webhook attempts by outcome, as the attempt log has them: one refused, then all delivered
    attempts = run.rows["attempts"]
    delivered = sum(1 for a in attempts if 200 <= (a["status_code"] or 0) < 300)
    assert delivered == 4 and len(attempts) == 5
    assert delta(before, after, "understudy_webhook_attempts_total", outcome="delivered") == 4
    assert delta(before, after, "understudy_webhook_attempts_total", outcome="http_status") == 1
    assert delta(before, after, "understudy_webhook_attempts_total") == len(attempts)
    assert delta(before, after, "understudy_webhook_attempt_duration_seconds_count") == 5
    # and the state read at scrape time: nothing waiting, no breaker open, the workers up
    assert value(after, "understudy_queue_depth", queue="agent") == 0
    assert value(after, "understudy_tasks_current") == 0
    assert value(after, "understudy_webhook_messages_pending") == 0
    assert value(after, "understudy_webhook_endpoints_breaker_open") == 0
    assert value(after, "understudy_worker_processes", queue="agent") == 2  # WORKER_CONCURRENCY
    assert value(after, "understudy_worker_processes", queue="webhooks") == 1
    # each of the 2 processes has its browser and a spare started ahead (BROWSER_SPARE)
    assert 1 <= value(after, "understudy_browsers") <= 4
    assert value(after, "understudy_metrics_source_up", source="postgres") == 1
    assert value(after, "understudy_metrics_source_up", source="redis") == 1


def _events(log: str) -> list[dict]:
    """The JSON events of the stack's log (each line is `time name.1 | {...}` under honcho)."""
    events = []
    for line in log.splitlines():
        _, bar, rest = line.partition("| ")
        if bar and rest.startswith("{"):
            events.append(json.loads(rest))
    return events


def test_logs_of_the_run_name_their_task_and_request_and_hold_no_secret(run):
    events = _events(run.log)
    assert {"api", "worker", "dispatcher", "scheduler"} <= {e.get("service") for e in events}
    # no secret and no sensitive input anywhere in what the processes wrote
    clinic, locked = run.accounts
    secrets = [SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, WRONG_PASSWORD, NEW_PASSWORD]
    secrets += [NEW_PASSWORD[::-1], clinic.api_key, locked.api_key]
    secrets += [clinic.webhook_secret or "", locked.webhook_secret or ""]
    for secret in secrets:
        assert secret and secret not in run.log
    # the wrong password: one INFO line with the reason, nothing at ERROR, no traceback
    failed = run.tasks["wrong_password"]
    assert failed["status"] == "failed"
    about = [e for e in events if e.get("task_id") == failed["id"]]
    assert any(
        e["level"] == "INFO" and "rejected the stored credentials" in e.get("reason", "")
        for e in about
    ), about
    assert all(e["level"] in ("DEBUG", "INFO") for e in about), about
    assert not any("traceback" in e or "Traceback" in json.dumps(e) for e in about)
    worker_lines = [e for e in about if e["service"] == "worker"]
    assert worker_lines and all(e.get("account_id") == locked.id for e in worker_lines), [
        e for e in worker_lines if e.get("account_id") != locked.id
    ]
    # member not found: an outcome, at INFO, with its reason
    nobody = run.tasks["not_found"]
    [finished] = [
        e
        for e in events
        if e.get("task_id") == nobody["id"] and e.get("status") == nobody["status"]
    ]
    assert finished["level"] == "INFO" and "not found" in finished["reason"].lower()
    # the reasons keep the why, not whom a task was about: no patient name or member id
    assert "Pat Nobody" not in run.log and "W300000003" not in run.log
    # a request's lines carry its id and its account
    [traced] = [e for e in events if e.get("request_id") == REQUEST_ID]
    assert traced["service"] == "api" and traced["account_id"] == clinic.id
    assert traced["status"] == 200
    # a webhook's attempt lines carry the message id
    assert any(e.get("message_id") and e["service"] == "dispatcher" for e in events)
