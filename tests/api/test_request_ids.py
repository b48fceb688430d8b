"""X-Request-Id: accepted when sane, made up otherwise, returned, and on every log line."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from shared import logs, users

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def lines():
    """The JSON lines the API process would write, while the test runs."""
    out = io.StringIO()
    handler = logs.handler("api", "json", out)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_sane_request_id_is_echoed_and_on_every_line_of_the_request(client, account, lines):
    # given a client that sends its own request id
    headers = {**account.headers, "X-Request-Id": "req-2026.12:abc_1"}
    # when it creates a task
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=headers
    )
    # then the answer carries the same id, and so does each line logged for the request
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-2026.12:abc_1"
    task_id = response.get_json()["id"]
    ours = [line for line in lines() if line.get("request_id") == "req-2026.12:abc_1"]
    [access] = [line for line in ours if line["logger"] == "api.requests"]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/tasks", 200)
    assert access["account_id"] == account.id and access["level"] == "INFO"
    # and the request's line names the task it created
    assert (access["task_id"], access["task_type"]) == (task_id, "check_eligibility")


def test_a_replayed_call_says_so_on_its_line(client, account, lines):
    # given a task canceled under a key, and the cancel sent again under it
    created = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    ).get_json()
    keyed = {**account.headers, "Idempotency-Key": "c-1"}
    for rid in ("first", "again"):
        client.post(f"/tasks/{created['id']}/cancel", headers={**keyed, "X-Request-Id": rid})
    # then only the second call's line says it was replayed
    replayed = {
        line["request_id"]: line.get("replayed")
        for line in lines()
        if line["logger"] == "api.requests" and line.get("request_id") in ("first", "again")
    }
    assert replayed == {"first": None, "again": True}


@pytest.mark.parametrize(
    "incoming",
    [None, "", "x" * 129, "has space", "-starts-with-dash", "ünïcode", "a;b", "a/b"],
)
def test_a_missing_or_odd_request_id_is_replaced_by_a_fresh_one(client, account, incoming):
    headers = dict(account.headers)
    if incoming is not None:
        headers["X-Request-Id"] = incoming
    response = client.get("/tasks", headers=headers)
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_errors_carry_a_request_id_too(client, lines):
    # given a request that fails before any handler: no key
    response = client.get("/tasks", headers={"X-Request-Id": "no-key-1"})
    assert response.status_code == 401
    assert response.headers["X-Request-Id"] == "no-key-1"
    [access] = [line for line in lines() if line.get("request_id") == "no-key-1"]
    assert access["status"] == 401 and "account_id" not in access


def test_the_context_does_not_leak_into_the_next_request(client, account, lines):
    client.get("/tasks", headers={**account.headers, "X-Request-Id": "first"})
    client.get("/tasks", headers={"X-Request-Id": "second"})
    [second] = [line for line in lines() if line.get("request_id") == "second"]
    assert "account_id" not in second
    assert logs.current() == {}


def test_a_console_invites_token_is_never_in_the_log(runtime, app, account, lines):
    # given an invite link, a one-time credential that sets a console user's password
    with runtime.pool.connection() as conn:
        token = users.invite_user(conn, account_id=account.id, email="n@c.test", role="admin",
                                  ttl_s=3600, limit=10)  # fmt: skip
    # when it is opened
    assert app.test_client().get(f"/console/invite/{token}").status_code == 200
    # then the request's line names the page, with the token masked
    text = json.dumps(lines())
    assert token not in text
    [access] = [line for line in lines() if line["logger"] == "api.requests"]
    assert access["path"] == "/console/invite/***"


@pytest.mark.parametrize(
    ("method", "suffix"), [("PUT", ""), ("DELETE", ""), ("GET", "/"), ("POST", "/accept")]
)
def test_an_invites_token_is_masked_on_a_request_no_route_answers(
    runtime, app, account, lines, method, suffix
):
    # given an invite link, a one-time credential that sets a console user's password
    with runtime.pool.connection() as conn:
        token = users.invite_user(conn, account_id=account.id, email="m@c.test", role="admin",
                                  ttl_s=3600, limit=10)  # fmt: skip
    # when it is sent with a method its page does not take, or a slash or a segment after it
    # (a 405 or a 404: no route matched, so Flask has no view arguments to mask)
    response = app.test_client().open(f"/console/invite/{token}{suffix}", method=method)
    assert response.status_code in (404, 405)
    # then the request's line still masks the token, which is still good for the invite
    assert token not in json.dumps(lines())
    [access] = [line for line in lines() if line["logger"] == "api.requests"]
    assert access["path"] == f"/console/invite/***{suffix}"
