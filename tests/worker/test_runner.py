"""The task lifecycle around the engine: claims, leases, credentials, cancel and input."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
import requests
from prometheus_client import REGISTRY, generate_latest

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared import logs, totp
from shared import tasks as task_queries
from shared.accounts import Credentials, put_credentials
from shared.crypto import decrypt_json
from shared.sop.library import builtin_sop_text
from shared.sop.profile import builtin_profile_text
from tests.scrape import delta, parse
from tests.worker.support import sandbox_runtime
from worker import runner

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def rt(runtime, sandbox_url):
    return sandbox_runtime(runtime, sandbox_url, input_timeout_s=30.0)


def _account_with(rt, make_account, password: str, totp_secret: str | None):
    """An account whose sandbox credentials are these (a wrong password, no TOTP secret...)."""
    account = make_account(sandbox=False)
    with rt.pool.connection() as conn:
        creds = Credentials(SANDBOX_USERNAME, password, totp_secret)
        put_credentials(conn, rt.fernet, account.id, "sandbox", creds)
    return account


def _task(client, account, data=JANE) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _row(rt, task_id: int) -> dict:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()


def _run_in_background(
    rt, task_id: int, browsers, *, until: str | Callable[[], bool]
) -> threading.Thread:
    """Run the task as a worker would, in a thread; return once it reaches the status
    ``until``, or once ``until()`` is true."""
    reached = until if callable(until) else lambda: _row(rt, task_id)["status"] == until
    worker = threading.Thread(
        target=runner.run_task, args=(rt, task_id), kwargs={"browsers": browsers}
    )
    worker.start()
    deadline = time.monotonic() + 60
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.05)
    return worker


def _messages(rt, task_id: int) -> list[dict]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT event, payload FROM webhook_messages WHERE task_id = %s", (task_id,)
        ).fetchall()


def test_a_second_delivery_of_the_same_message_is_a_no_op(rt, client, account, browsers, caplog):
    task_id = _task(client, account)
    runner.run_task(rt, task_id, browsers=browsers)
    caplog.set_level(logging.INFO)
    out = io.StringIO()
    handler = logs.handler("worker", "json", stream=out)
    runner.log.addHandler(handler)
    try:
        runner.run_task(rt, task_id, browsers=browsers)
    finally:
        runner.log.removeHandler(handler)
    # its log line names the task, its account and why it was skipped
    [skipped] = [json.loads(line) for line in out.getvalue().splitlines() if "skipping" in line]
    assert (skipped["task_id"], skipped["account_id"]) == (task_id, account.id), skipped
    assert "not claimable (completed)" in skipped["message"], skipped
    row = _row(rt, task_id)
    assert row["status"] == "completed" and row["attempts"] == 1
    [message] = _messages(rt, task_id)
    assert message["event"] == "task_finished"
    assert message["payload"]["status"] == "completed"


def test_the_trajectory_records_every_step(rt, client, account, browsers):
    before = parse(generate_latest(REGISTRY).decode())
    task_id = _task(client, account)
    runner.run_task(rt, task_id, browsers=browsers)
    with rt.pool.connection() as conn:
        steps = conn.execute(
            "SELECT name, status FROM trajectory_steps WHERE task_id = %s ORDER BY seq",
            (task_id,),
        ).fetchall()
    assert len(steps) >= 3
    assert all(step["status"] in {"ok", "skipped"} for step in steps)
    # and each step was timed by its kind, the run and its wait once (this process's metrics)
    after = parse(generate_latest(REGISTRY).decode())
    step_count = "understudy_step_duration_seconds_count"
    assert delta(before, after, step_count) == len(steps)
    assert delta(before, after, step_count, kind="login", status="ok") == 1
    assert delta(before, after, step_count, kind="other") == 0
    run_count = "understudy_task_duration_seconds_count"
    assert delta(before, after, run_count, type="check_eligibility", status="completed") == 1
    assert delta(before, after, "understudy_task_wait_seconds_count") == 1


def test_no_credentials_fails_with_a_note_that_says_what_to_do(rt, client, make_account, browsers):
    # Creation refuses a portal without a login (422), so the login goes after the task is made.
    account = make_account()
    task_id = _task(client, account)
    assert client.delete("/credentials/sandbox", headers=account.headers).status_code == 204
    runner.run_task(rt, task_id, browsers=browsers)
    row = _row(rt, task_id)
    assert row["status"] == "failed" and row["failed_at"] is not None
    assert "PUT /credentials/sandbox" in row["notes"]


def test_wrong_password_fails_at_once_with_one_login_attempt(
    rt, client, make_account, browsers, sandbox_url, caplog
):
    caplog.set_level(logging.INFO)
    account = _account_with(rt, make_account, "not-the-password", SANDBOX_TOTP_SECRET)
    task_id = _task(client, account)
    status = runner.run_task(rt, task_id, browsers=browsers)
    row = _row(rt, task_id)
    assert status == row["status"] == "failed"
    assert "rejected the stored credentials" in row["notes"]
    stats = requests.get(f"{sandbox_url}/__sandbox/stats", timeout=5).json()
    assert stats["login_attempts"][SANDBOX_USERNAME] == 1
    assert "not-the-password" not in row["notes"]
    # an expected outcome: one INFO line with the reason, no ERROR, no traceback
    [finished] = [r for r in caplog.records if getattr(r, "status", None) == "failed"]
    assert finished.levelno == logging.INFO
    assert "rejected the stored credentials" in finished.reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_login_deleted_while_the_task_runs_is_not_typed_again(
    rt, client, account, browsers, sandbox_url
):
    # given a task running on a slow portal that ends its session after a few pages
    faults = f"{sandbox_url}/__sandbox/faults"
    requests.post(faults, json={"slow_s": 0.5, "expire_after_requests": 4}, timeout=5)
    signed_in = requests.get(f"{sandbox_url}/__sandbox/stats", timeout=5).json()
    before = signed_in["login_attempts"].get(SANDBOX_USERNAME, 0)
    task_id = _task(client, account)
    # until a step ran: its login was read with the claim
    worker = _run_in_background(rt, task_id, browsers, until=lambda: bool(_step_names(rt, task_id)))

    # when the account deletes the portal's login, and the portal then ends the session
    assert client.delete("/credentials/sandbox", headers=account.headers).status_code == 204
    worker.join(timeout=90)
    requests.post(faults, json={"slow_s": 0, "expire_after_requests": None}, timeout=5)

    # then the task ends saying why, and the deleted login was typed only for the first sign-in
    row = _row(rt, task_id)
    assert row["status"] == "failed", row["notes"]
    assert "were deleted while the task ran" in row["notes"]
    assert "PUT /credentials/sandbox" in row["notes"]
    stats = requests.get(f"{sandbox_url}/__sandbox/stats", timeout=5).json()
    assert stats["login_attempts"][SANDBOX_USERNAME] - before == 1


def test_cancel_stops_a_running_task_within_seconds(rt, client, account, browsers, sandbox_url):
    requests.post(f"{sandbox_url}/__sandbox/faults", json={"slow_s": 1.0}, timeout=5)
    task_id = _task(client, account)
    worker = _run_in_background(rt, task_id, browsers, until="running")
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 202
    canceled_at = time.monotonic()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert time.monotonic() - canceled_at < 30
    assert _row(rt, task_id)["status"] == "canceled"
    assert not browsers.is_open  # the browser was closed, not kept for the next task
    [message] = _messages(rt, task_id)
    assert message["payload"]["status"] == "canceled"


# A step that takes a few seconds (waiting for text that never shows), then one that must not
# run once the task is canceled during the wait.
SLOW_THEN_NEXT = """
task_type: check_eligibility
title: Wait, then go on
portal: {name: sandbox}
inputs: [{name: member_id}]
steps:
  - login: {url: /dashboard}
  - name: Wait for text that never shows
    wait_for: {text: This text is never on the page}
    timeout_s: 5
    optional: true
  - name: The step after the cancel
    goto: /dashboard
outcomes: [{status: completed, notes: ok}]
"""


def test_cancel_takes_effect_at_the_next_step_not_the_next_heartbeat(rt, client, account, browsers):
    rt = dataclasses.replace(rt, settings=rt.settings.replace(task_heartbeat_s=30.0))
    put = client.put(
        "/sops/check_eligibility", json={"sop": SLOW_THEN_NEXT}, headers=account.headers
    )
    assert put.status_code == 201, put.get_json()
    task_id = _task(client, account)
    # until the sign-in step is recorded: the wait is running now
    worker = _run_in_background(rt, task_id, browsers, until=lambda: bool(_step_names(rt, task_id)))
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 202
    canceled_at = time.monotonic()
    worker.join(timeout=60)
    assert not worker.is_alive()
    # Ended after the wait (5 s), well before the first heartbeat (30 s) could see the cancel.
    assert time.monotonic() - canceled_at < 20
    assert _row(rt, task_id)["status"] == "canceled"
    [message] = _messages(rt, task_id)
    assert message["payload"]["status"] == "canceled"
    # The cancel usually lands while the wait runs, which then ends as written; on a busy
    # machine it can land before the wait begins, which then never runs. Either way, no step
    # begins after the cancel was seen.
    names = _step_names(rt, task_id)
    assert names[0].startswith("1. Sign in"), names
    assert names[1:] in ([], ["2. Wait for text that never shows"]), names


def _step_names(rt, task_id: int) -> list[str]:
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT name FROM trajectory_steps WHERE task_id = %s ORDER BY seq", (task_id,)
        ).fetchall()
    return [row["name"] for row in rows]


# A task type of the account's own, written only with the SOP language: sign in, open the
# eligibility page, search the member and read the plan.
CHECK_MEMBER_PLAN = """
task_type: check_member_plan
title: Read a member's plan
portal: {name: sandbox}
inputs:
  - {name: member_id, format: member_id, required: true}
  - {name: patient, format: name, required: true}
  - {name: dob, format: date, required: true}
steps:
  - login: {url: /dashboard}
  - dismiss_if_present: {button: Dismiss, within: {role: dialog}}
  - select: {label: Payer, option: Sandbox Health}
  - click: {button: Continue}
  - click: {link: Eligibility & Benefits}
  - fill: {label: Member ID, value: "{{ member_id }}"}
  - fill: {label: Patient First Name, value: "{{ patient.first }}"}
  - fill: {label: Patient Last Name, value: "{{ patient.last }}"}
  - fill: {label: Date of Birth, value: "{{ dob | us_date }}"}
  - click: {button: Search}
  - extract: {into: coverage, pairs: {role: table, name: Eligibility Result}}
outcomes:
  - status: completed
    notes: "{{ member_id }} is on plan {{ coverage.plan }}."
"""


def test_a_custom_type_task_runs_through_the_worker(rt, client, account, browsers):
    put = client.put(
        "/sops/check_member_plan", json={"sop": CHECK_MEMBER_PLAN}, headers=account.headers
    )
    assert put.status_code == 201, put.get_json()
    created = client.post(
        "/tasks", json={"type": "check_member_plan", "data": JANE}, headers=account.headers
    )
    assert created.status_code == 200, created.get_json()
    task_id = created.get_json()["id"]
    runner.run_task(rt, task_id, browsers=browsers)
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert task["status"] == "completed", task["notes"]
    assert task["notes"] == "W100000001 is on plan Sandbox Gold PPO."
    assert task["result"]["coverage"]["coverage_status"] == "Active"
    [message] = _messages(rt, task_id)
    assert message["payload"]["status"] == "completed"
    assert message["payload"]["type"] == "check_member_plan"


def test_cancel_of_a_queued_task_ends_it_at_once_and_a_finished_one_is_409(rt, client, account):
    task_id = _task(client, account)
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert _messages(rt, task_id)[0]["payload"]["status"] == "canceled"
    again = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "task_finished"


def test_mfa_without_a_totp_secret_waits_for_input_then_resumes(rt, client, make_account, browsers):
    account = _account_with(rt, make_account, SANDBOX_PASSWORD, None)
    task_id = _task(client, account)
    worker = _run_in_background(rt, task_id, browsers, until="waiting_for_input")
    assert client.get(f"/tasks/{task_id}", headers=account.headers).get_json()["status"] == (
        "waiting_for_input"
    )
    code = totp.code(SANDBOX_TOTP_SECRET)
    response = client.post(f"/tasks/{task_id}/input", json={"code": code}, headers=account.headers)
    assert response.status_code == 202
    worker.join(timeout=60)
    assert _row(rt, task_id)["status"] == "completed"


def test_input_for_a_task_that_is_not_waiting_is_409(client, account):
    task_id = _task(client, account)
    response = client.post(
        f"/tasks/{task_id}/input", json={"code": "123456"}, headers=account.headers
    )
    assert response.status_code == 409
    missing = client.post(f"/tasks/{task_id}/input", json={}, headers=account.headers)
    assert missing.status_code == 422


def test_a_second_code_before_the_first_is_read_is_refused_not_lost(rt, client, account):
    # given a task waiting for a one-time code, and a code sent to it that the agent has not
    # read yet
    task_id = _task(client, account)
    with rt.pool.connection() as conn:
        conn.execute("UPDATE tasks SET status = 'waiting_for_input' WHERE id = %s", (task_id,))

    def send(code: str):
        return client.post(f"/tasks/{task_id}/input", json={"code": code},
                           headers=account.headers)  # fmt: skip

    assert send("123456").status_code == 202
    # when someone else sends another, then it is refused, saying why
    second = send("654321")
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "input_pending"
    # and the agent reads the first one, not the second
    with rt.pool.connection() as conn:
        taken = task_queries.take_input(conn, task_id)
    assert taken is not None and decrypt_json(rt.fernet, taken) == {"code": "123456"}
    # and once it was read (the portal refused it, say), a new code is taken
    assert send("654321").status_code == 202


def test_no_code_in_time_fails_with_a_note(rt, client, make_account, browsers):
    # given credentials without a TOTP secret and nobody to type the code
    account = _account_with(rt, make_account, SANDBOX_PASSWORD, None)
    task_id = _task(client, account)
    quick = dataclasses.replace(rt, settings=rt.settings.replace(input_timeout_s=1.0))
    # when the task runs, then it fails saying no code arrived
    runner.run_task(quick, task_id, browsers=browsers)
    row = _row(rt, task_id)
    assert row["status"] == "failed"
    assert "No one-time code was supplied" in row["notes"]


def test_an_sop_pointing_at_a_private_address_fails_when_not_allowed(rt, client, account, browsers):
    # given an account SOP whose portal is the cloud metadata address
    sop = builtin_sop_text("check_eligibility").replace(
        "  name: sandbox", "  name: metadata\n  base_url: http://169.254.169.254"
    )
    assert client.put(
        "/sops/check_eligibility", data=sop, headers=account.headers, content_type="text/yaml"
    ).status_code in (200, 201)
    with rt.pool.connection() as conn:
        creds = Credentials("someone", "something", None)
        put_credentials(conn, rt.fernet, account.id, "metadata", creds)
    task_id = _task(client, account)
    strict = dataclasses.replace(rt, settings=rt.settings.replace(portal_allow_private=False))
    # when it runs, then it fails without browsing there
    runner.run_task(strict, task_id, browsers=browsers)
    row = _row(rt, task_id)
    assert row["status"] == "failed"
    assert "is refused" in row["notes"] and "link-local" in row["notes"]


def test_every_step_gets_a_screenshot_when_the_operator_asks(rt, client, account, browsers):
    # given SCREENSHOTS=every_step, where the built-in SOP itself asks for failures only
    task_id = _task(client, account)
    every = dataclasses.replace(rt, settings=rt.settings.replace(screenshots="every_step"))
    # when the task runs
    runner.run_task(every, task_id, browsers=browsers)
    # then every recorded step has a PNG, and the API serves it
    with rt.pool.connection() as conn:
        steps = conn.execute(
            "SELECT status, artifact_id FROM trajectory_steps WHERE task_id = %s AND status = 'ok'",
            (task_id,),
        ).fetchall()
    assert steps and all(step["artifact_id"] for step in steps)
    png = client.get(f"/artifacts/{steps[0]['artifact_id']}", headers=account.headers)
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")


def test_a_version_stored_before_re2_with_a_lookahead_stays_readable_and_fails_saying_why(
    rt, client, account, browsers
):
    # given the account's SOP, then its stored text as a release before RE2 accepted it: a
    # lookahead in a pattern (a new digest, as a new version's)
    text = CHECK_MEMBER_PLAN.replace(
        "  - click: {button: Search}\n",
        "  - click: {button: Search}\n  - extract: {into: at, url: true, pattern: 'http(.*)'}\n",
    )
    assert client.put("/sops/check_member_plan", json={"sop": text},
                      headers=account.headers).status_code == 201  # fmt: skip
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE sops SET body = replace(body, 'http(.*)', '(?=http)(.*)'),"
            " digest = 'before-re2-' || digest WHERE account_id = %s",
            (account.id,),
        )

    # when it is read, a task is created with it and the task runs
    read = client.get("/sops/check_member_plan", headers=account.headers)
    created = client.post(
        "/tasks", json={"type": "check_member_plan", "data": JANE}, headers=account.headers
    )
    assert created.status_code == 200, created.get_json()  # a 500 before
    runner.run_task(rt, created.get_json()["id"], browsers=browsers)
    task = client.get(f"/tasks/{created.get_json()['id']}", headers=account.headers).get_json()

    # then the version reads as stored, and the task fails once, saying what to change
    assert read.status_code == 200 and "(?=http)(.*)" in read.get_json()["body"]
    assert task["status"] == "failed"
    assert "a pattern that cannot run" in task["notes"]
    assert "invalid perl operator: (?=" in task["notes"]
    assert "PUT /sops/check_member_plan" in task["notes"]
    assert task["attempts"] == 1


def test_a_stored_sop_version_the_current_rules_refuse_fails_its_task_once_saying_why(
    rt, client, account, browsers
):
    # given a task created on the account's SOP, then that version as an earlier release stored
    # it: with a step of a kind this release does not know (a new digest, as a new version's)
    assert client.put("/sops/check_member_plan", json={"sop": CHECK_MEMBER_PLAN},
                      headers=account.headers).status_code == 201  # fmt: skip
    created = client.post(
        "/tasks", json={"type": "check_member_plan", "data": JANE}, headers=account.headers
    )
    assert created.status_code == 200, created.get_json()
    task_id = created.get_json()["id"]
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE sops SET body = replace(body, '  - click: {button: Search}',"
            " '  - hover: {button: Search}'), digest = 'earlier-' || digest"
            " WHERE account_id = %s",
            (account.id,),
        )

    # when the worker runs it, and its message comes again
    status = runner.run_task(rt, task_id, browsers=browsers)
    runner.run_task(rt, task_id, browsers=browsers)

    # then the task failed once, naming the version and the problem, and saying what to do
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert status == "failed" and task["status"] == "failed", task["notes"]
    assert task["attempts"] == 1
    for text in ("check_member_plan", "version 1", "a step needs exactly one action",
                 "PUT /sops/check_member_plan"):  # fmt: skip
        assert text in task["notes"], task["notes"]
    assert _step_names(rt, task_id) == []  # it never signed in
    assert [m["event"] for m in _messages(rt, task_id)] == ["task_finished"]


def test_a_stored_profile_version_the_current_rules_refuse_fails_its_task_once_saying_why(
    rt, client, account, browsers
):
    # given a task on the sandbox, then the account's sandbox profile as an earlier release
    # stored it: a value of a type this release refuses
    task_id = _task(client, account)
    text = builtin_profile_text("sandbox").replace(
        "portal: sandbox\n", "portal: sandbox\nmax_sessions: many\n", 1
    )
    with rt.pool.connection() as conn:
        conn.execute(
            "INSERT INTO portal_profiles (account_id, portal, version, body, digest)"
            " VALUES (%s, 'sandbox', 1, %s, 'earlier-profile')",
            (account.id, text),
        )

    # when the worker runs it, and its message comes again
    status = runner.run_task(rt, task_id, browsers=browsers)
    runner.run_task(rt, task_id, browsers=browsers)

    # then the task failed once, naming the profile's version and the problem
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert status == "failed" and task["status"] == "failed", task["notes"]
    assert task["attempts"] == 1
    for text in ("sandbox", "version 1", "max_sessions", "PUT /portals/sandbox/profile"):
        assert text in task["notes"], task["notes"]
    assert _step_names(rt, task_id) == []


# A submit (any irreversible step), then a step that takes a few seconds: the cancel lands
# during it, after the payer has what was submitted.
SUBMIT_THEN_WAIT = """
task_type: check_eligibility
title: Submit, then wait
portal: {name: sandbox}
inputs: [{name: member_id}]
steps:
  - login: {url: /dashboard}
  - name: Submit it
    click: {link: Claims}
    irreversible: true
  - name: Wait for text that never shows
    wait_for: {text: This text is never on the page}
    timeout_s: 5
    optional: true
  - name: The step after the cancel
    goto: /dashboard
verify:
  - goto: /dashboard
outcomes: [{status: completed, notes: ok}]
"""


def test_a_cancel_after_the_submit_step_does_not_say_nothing_was_done(
    rt, client, account, browsers
):
    """Found by a concurrency audit: a claim canceled while its confirmation page loaded (the
    payer had it, CLM-13118332 on the sandbox) ended ``canceled``, "Canceled at the client's
    request.", and its webhook said so: a client would send the claim again."""
    put = client.put(
        "/sops/check_eligibility", json={"sop": SUBMIT_THEN_WAIT}, headers=account.headers
    )
    assert put.status_code == 201, put.get_json()
    task_id = _task(client, account)
    # until the submit ran: the wait after it is running now
    worker = _run_in_background(
        rt, task_id, browsers, until=lambda: "2. Submit it" in _step_names(rt, task_id)
    )
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 202
    worker.join(timeout=60)
    assert not worker.is_alive()
    # then it ends saying the payer may have the submission, and its webhook says the same
    row = _row(rt, task_id)
    assert row["status"] == "completed_with_issues"
    assert "payer may have" in row["notes"]
    [message] = _messages(rt, task_id)
    assert message["payload"]["status"] == "completed_with_issues"
