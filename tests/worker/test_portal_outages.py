"""A portal that is down: the account's tasks wait for it (``waiting_for_portal``) instead of
failing, one probe at a time finds it back, and then they all run (real Postgres, real
browsers, the sandbox's ``down`` switch; the whole stack is in tests/e2e/test_portal_outages.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from scheduler.loop import tick
from shared import outages
from shared import tasks as task_queries
from shared.settings import SettingsError, load_settings
from shared.sop.profile import builtin_profile_text
from shared.tasks import iso
from tests.worker.support import sandbox_runtime
from worker import runner

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def rt(runtime, sandbox_url):
    return sandbox_runtime(
        runtime,
        sandbox_url,
        portal_retry_attempts=1,
        portal_probe_after_s=0.2,
        pending_requeue_after_s=3600,
    )


def _down(sandbox_url: str, down: bool) -> None:
    requests.post(f"{sandbox_url}/__sandbox/faults", json={"down": down}, timeout=5)


def _task(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    assert response.status_code == 200
    return response.get_json()["id"]


def _get(client, account, task_id: int) -> dict:
    return client.get(f"/tasks/{task_id}", headers=account.headers).get_json()


def _outage(rt, account) -> dict | None:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT * FROM portal_outages WHERE account_id = %s", (account.id,)
        ).fetchone()


def _steps(rt, task_id: int) -> int:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM trajectory_steps WHERE task_id = %s", (task_id,)
        ).fetchone()["n"]


def _tick_after_probe_due(rt, account) -> None:
    while (outage := _outage(rt, account)) and outage["next_probe_at"] > _now(rt):
        time.sleep(0.05)
    tick(rt)


def _parked_at(rt, task_id: int):
    """When the task last went back to waiting: the same transaction timed its next probe."""
    with rt.pool.connection() as conn:
        row = conn.execute("SELECT updated_at FROM tasks WHERE id = %s", (task_id,)).fetchone()
    return row["updated_at"]


def _now(rt):
    with rt.pool.connection() as conn:
        return conn.execute("SELECT now() AS t").fetchone()["t"]


def test_a_task_on_a_down_portal_waits_and_the_accounts_next_one_does_not_start(
    rt, client, account, browsers, sandbox_url
):
    # given the portal is down
    _down(sandbox_url, True)
    first, second = _task(client, account), _task(client, account)
    # when a worker runs the first task
    assert runner.run_task(rt, first, browsers=browsers) is None
    # then it does not fail: it waits for the portal, saying since when and why
    task = _get(client, account, first)
    assert task["status"] == "waiting_for_portal", task["notes"]
    assert task["notes"].startswith("Waiting for portal 'sandbox', failing since ")
    assert "Service Unavailable" in task["notes"] and "the next try is at" in task["notes"]
    assert task["failedAt"] is None
    # and the account's next task, when a worker takes it, waits without opening the portal
    assert runner.run_task(rt, second, browsers=browsers) is None
    waiting = _get(client, account, second)
    assert (waiting["status"], waiting["attempts"], waiting["startedAt"]) == (
        "waiting_for_portal",
        0,
        None,
    )
    assert _steps(rt, second) == 0
    listed = client.get("/tasks?status=waiting_for_portal", headers=account.headers).get_json()
    assert sorted(t["id"] for t in listed["data"]) == [first, second]


def test_when_the_portal_is_back_one_probe_runs_then_every_waiting_task(
    rt, client, account, browsers, sandbox_url
):
    # given two tasks waiting for the portal
    _down(sandbox_url, True)
    first, second = _task(client, account), _task(client, account)
    runner.run_task(rt, first, browsers=browsers)
    runner.run_task(rt, second, browsers=browsers)
    # when the portal is back and the next probe is due
    _down(sandbox_url, False)
    _tick_after_probe_due(rt, account)
    # then the scheduler sends the oldest as the probe; the other keeps waiting
    assert _get(client, account, first)["status"] == "dispatching"
    assert _get(client, account, second)["status"] == "waiting_for_portal"
    assert _outage(rt, account)["probe_task_id"] == first
    assert _outage(rt, account)["cause"] == "down"
    # and once the probe got past the sign-in, the outage ends and the other task is sent
    assert str(runner.run_task(rt, first, browsers=browsers)) == "completed"
    assert _outage(rt, account) is None
    task = _get(client, account, second)
    assert (task["status"], task["notes"]) == ("dispatching", None)
    assert str(runner.run_task(rt, second, browsers=browsers)) == "completed"


def _events(rt, task_id: int) -> list[str]:
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT event FROM webhook_messages WHERE task_id = %s ORDER BY id", (task_id,)
        ).fetchall()
    return [r["event"] for r in rows]


def test_a_probe_that_finds_the_portal_still_down_puts_the_next_one_further_off(
    rt, client, account, browsers, sandbox_url
):
    # given an endpoint that opted in to hear of tasks waiting for their portal
    opted = client.put(
        "/webhook-endpoint",
        json={"filter_types": ["task_finished", "task.waiting_for_portal"]},
        headers=account.headers,
    )
    assert opted.status_code == 200, opted.get_json()
    _down(sandbox_url, True)
    task_id, sibling = _task(client, account), _task(client, account)
    runner.run_task(rt, task_id, browsers=browsers)
    runner.run_task(rt, sibling, browsers=browsers)
    # each task that started waiting is one event, carrying the task as it waits
    assert _events(rt, task_id) == _events(rt, sibling) == ["task.waiting_for_portal"]
    opened = _outage(rt, account)
    _tick_after_probe_due(rt, account)
    # when the probe runs and the portal is still down
    assert runner.run_task(rt, task_id, browsers=browsers) is None
    # then the task waits again, and the next probe is twice as far off
    again = _outage(rt, account)
    waiting = _get(client, account, task_id)
    assert waiting["status"] == "waiting_for_portal"
    assert (again["since"], again["probes"], again["probe_task_id"]) == (opened["since"], 1, None)
    first_gap = opened["next_probe_at"] - opened["since"]
    assert again["next_probe_at"] - _parked_at(rt, task_id) > first_gap
    # and the notes of every task waiting for it say when that is
    assert waiting["notes"].endswith(f"the next try is at {iso(again['next_probe_at'])}.")
    assert _get(client, account, sibling)["notes"] == waiting["notes"]
    # and a probe that waits again is no new event
    assert _events(rt, task_id) == ["task.waiting_for_portal"]


def test_a_task_that_waited_too_long_fails_with_its_webhook(
    rt, client, account, browsers, sandbox_url
):
    _down(sandbox_url, True)
    task_id = _task(client, account)
    runner.run_task(rt, task_id, browsers=browsers)
    # when it has waited longer than PORTAL_OUTAGE_WAIT_S (4 hours by default), and the
    # outage's next probe is due as well
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET portal_down_since = now() - interval '5 hours' WHERE id = %s",
            (task_id,),
        )
        conn.execute(
            "UPDATE portal_outages SET next_probe_at = now() - interval '1 second'"
            " WHERE account_id = %s",
            (account.id,),
        )
    report = tick(rt)
    # then the scheduler fails it, saying so, and the client's webhook is written
    task = _get(client, account, task_id)
    assert report.tasks_failed == 1 and task["status"] == "failed"
    assert task["notes"].startswith("Portal error: the portal 'sandbox' was still failing")
    assert "PORTAL_OUTAGE_WAIT_S" in task["notes"] and "Service Unavailable" in task["notes"]
    with rt.pool.connection() as conn:
        sent = conn.execute(
            "SELECT event FROM webhook_messages WHERE task_id = %s", (task_id,)
        ).fetchall()
    assert [m["event"] for m in sent] == ["task_finished"]


def test_with_no_wait_a_down_portal_fails_the_task_at_once(
    rt, client, account, browsers, sandbox_url
):
    rt = dataclasses.replace(rt, settings=rt.settings.replace(portal_outage_wait_s=0))
    _down(sandbox_url, True)
    task_id = _task(client, account)
    assert str(runner.run_task(rt, task_id, browsers=browsers)) == "failed"
    assert _get(client, account, task_id)["notes"].startswith(
        "Portal error, still failing after retries: "
    )
    assert _outage(rt, account) is None


def test_one_accounts_outage_holds_no_other_account(
    rt, client, make_account, browsers, sandbox_url
):
    # given one clinic's tasks waiting for the portal
    waiting_clinic, other_clinic = make_account("Waiting"), make_account("Other")
    _down(sandbox_url, True)
    waiting = _task(client, waiting_clinic)
    runner.run_task(rt, waiting, browsers=browsers)
    # when another clinic's task runs on the same portal, back up before the probe
    _down(sandbox_url, False)
    other = _task(client, other_clinic)
    # then it runs, and the first clinic's outage stays its own, for its probe to end
    assert str(runner.run_task(rt, other, browsers=browsers)) == "completed"
    assert _get(client, waiting_clinic, waiting)["status"] == "waiting_for_portal"
    assert _outage(rt, waiting_clinic) is not None


def test_a_task_waiting_for_its_portal_can_be_canceled(rt, client, account, browsers, sandbox_url):
    _down(sandbox_url, True)
    task_id = _task(client, account)
    runner.run_task(rt, task_id, browsers=browsers)
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert (response.status_code, response.get_json()["status"]) == (200, "canceled")
    # and an outage nobody waits for any more ends at its next probe
    _tick_after_probe_due(rt, account)
    assert _outage(rt, account) is None


def test_tasks_already_running_when_the_portal_went_down_join_its_outage(rt, client, account):
    # given two of the account's tasks running when the portal goes down
    first, second = _task(client, account), _task(client, account)
    with rt.pool.connection() as conn:
        for task_id, worker in ((first, "worker-a"), (second, "worker-b")):
            task_queries.claim_task(conn, task_id, worker, 30)

    def fail(task_id: int, worker: str) -> str | None:
        with rt.pool.connection() as conn:
            return outages.portal_failed(
                conn, task_id, account.id, "sandbox", "down", worker=worker, wait_s=60,
                probe_after_s=30,
            )  # fmt: skip

    # when both fail at the sign-in, one after the other
    assert fail(first, "worker-a") is not None
    opened = _outage(rt, account)
    assert fail(second, "worker-b") is not None
    # then both wait for one outage, whose first probe is not put off by the second
    again = _outage(rt, account)
    assert (again["probes"], again["next_probe_at"]) == (0, opened["next_probe_at"])
    assert {_get(client, account, t)["status"] for t in (first, second)} == {"waiting_for_portal"}


def test_the_outage_settings_are_checked_at_start():
    assert load_settings({}).portal_outage_wait_s == 4 * 3600
    assert load_settings({"PORTAL_OUTAGE_WAIT_S": "0"}).portal_outage_wait_s == 0
    for name, value in (("PORTAL_OUTAGE_WAIT_S", "-1"), ("PORTAL_PROBE_AFTER_S", "0")):
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value})


def test_an_outage_whose_cause_changes_is_timed_from_the_change(rt, client, account):
    # given an account's portal down for an hour
    first, second = _task(client, account), _task(client, account)
    with rt.pool.connection() as conn:
        for task_id, worker in ((first, "worker-a"), (second, "worker-b")):
            task_queries.claim_task(conn, task_id, worker, 30)
        outages.portal_failed(
            conn, first, account.id, "sandbox", "HTTP 503", worker="worker-a", wait_s=7200,
            probe_after_s=30,
        )  # fmt: skip
        conn.execute(
            "UPDATE portal_outages SET since = since - interval '1 hour' WHERE account_id = %s",
            (account.id,),
        )
    down_since = _outage(rt, account)["since"]

    # when a sign-in then finds it up, but refusing the user signed in elsewhere
    with rt.pool.connection() as conn:
        outages.portal_failed(
            conn, second, account.id, "sandbox", "signed in elsewhere", worker="worker-b",
            wait_s=7200, probe_after_s=30, cause=outages.OutageCause.SIGNED_IN_ELSEWHERE,
        )  # fmt: skip

    # then the outage says so, timed from now: the alerts time each cause on its own
    changed = _outage(rt, account)
    assert changed["cause"] == "signed_in_elsewhere"
    assert changed["since"] > down_since + timedelta(minutes=59)


@pytest.mark.parametrize("change", ["login", "profile"])
def test_a_fixed_login_or_profile_is_probed_at_once_not_after_the_backoff(
    rt, client, account, browsers, sandbox_url, change
):
    # given a task waiting for its portal, whose next probe is ten minutes off
    slow = dataclasses.replace(rt, settings=rt.settings.replace(portal_probe_after_s=600))
    _down(sandbox_url, True)
    task_id = _task(client, account)
    assert runner.run_task(slow, task_id, browsers=browsers) is None
    _down(sandbox_url, False)
    assert _outage(rt, account)["next_probe_at"] - _now(rt) > timedelta(minutes=9)
    with rt.pool.connection() as conn:
        assert outages.due_probes(conn) == []

    # when the account stores its portal's login again, or a new version of its profile
    if change == "login":
        login = {"username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD,
                 "totp_secret": SANDBOX_TOTP_SECRET}  # fmt: skip
        response = client.put("/credentials/sandbox", json=login, headers=account.headers)
    else:
        profile = builtin_profile_text("sandbox").replace("title:", "title: Ours -", 1)
        response = client.put("/portals/sandbox/profile", json={"profile": profile},
                              headers=account.headers)  # fmt: skip
    assert response.status_code in (200, 201), response.get_json()

    # then the waiting task is the probe at the scheduler's next tick, and it completes
    with rt.pool.connection() as conn:
        assert outages.due_probes(conn) == [task_id]
    assert runner.run_task(rt, task_id, browsers=browsers) == "completed"
    assert _outage(rt, account) is None


def test_a_task_canceled_while_it_retries_a_portal_that_is_down_ends_canceled(
    runtime, sandbox_url, client, account, browsers
):
    """Found by a concurrency audit: canceled while its run retried a portal that was down
    (202), a task ended ``failed`` ("Portal error, still failing after retries"): a client that
    sends failed tasks again would send the one it canceled."""
    rt = sandbox_runtime(runtime, sandbox_url, portal_retry_attempts=6, portal_retry_base_s=0.2)
    _down(sandbox_url, True)
    try:
        task_id = _task(client, account)
        worker = threading.Thread(
            target=runner.run_task, args=(rt, task_id), kwargs={"browsers": browsers}
        )
        worker.start()
        deadline = time.monotonic() + 30
        while _get(client, account, task_id)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # its first try found the portal down: it is retrying
        response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
        assert response.status_code == 202
        worker.join(timeout=90)
        assert not worker.is_alive()
    finally:
        _down(sandbox_url, False)
    task = _get(client, account, task_id)
    assert task["status"] == "canceled", task["notes"]
    # and no try came after the cancel: the retries stopped there, not at the sixth
    with rt.pool.connection() as conn:
        tries = conn.execute(
            "SELECT count(*) AS n FROM trajectory_steps WHERE task_id = %s AND status = 'failed'",
            (task_id,),
        ).fetchone()["n"]
    assert 1 <= tries < 6, tries
