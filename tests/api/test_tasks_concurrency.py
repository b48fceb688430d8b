"""POST /tasks under concurrency: task numbers, idempotency and the SOP cache stay correct."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.sop.library import builtin_sop_text

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
BODY = {"type": "check_eligibility", "data": ELIGIBILITY}


def _parallel(app, calls: int, send) -> list:
    def one(_: int):
        return send(app.test_client())

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(calls)))


def test_concurrent_creates_of_one_account_number_1_to_n(app, make_account, runtime):
    # given one account and a second one creating at the same time
    account, other = make_account("Busy"), make_account("Neighbour")
    # when 40 creates of the first and 8 of the second run 8 at a time
    busy = _parallel(app, 40, lambda c: c.post("/tasks", json=BODY, headers=account.headers))
    calm = _parallel(app, 8, lambda c: c.post("/tasks", json=BODY, headers=other.headers))
    # then every one succeeded, and each account's numbers are 1..n, each exactly once
    assert {r.status_code for r in busy + calm} == {200}
    assert sorted(r.get_json()["task_number"] for r in busy) == list(range(1, 41))
    assert sorted(r.get_json()["task_number"] for r in calm) == list(range(1, 9))
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT account_id, count(*) AS n, max(task_number) AS top FROM tasks"
            " GROUP BY account_id ORDER BY account_id"
        ).fetchall()
    assert [(r["n"], r["top"]) for r in rows] == [(40, 40), (8, 8)]


def test_one_idempotency_key_sent_concurrently_creates_one_task(app, account, runtime):
    # given 12 requests with the same key and body, sent 8 at a time
    headers = {**account.headers, "Idempotency-Key": "batch-7"}
    responses = _parallel(app, 12, lambda c: c.post("/tasks", json=BODY, headers=headers))
    # then all of them answer 200 with the same task, and only one task exists
    assert {r.status_code for r in responses} == {200}
    assert len({r.get_json()["id"] for r in responses}) == 1
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 1


def test_a_new_sop_version_is_used_at_once_despite_the_cache(client, account):
    # given a task created with the built-in SOP (now parsed and cached)
    first = client.post("/tasks", json=BODY, headers=account.headers).get_json()
    # when the account stores its own version, and creates another task
    text = builtin_sop_text("check_eligibility").replace(
        "title: Check eligibility and benefits", "title: Our own eligibility check"
    )
    put = client.put(
        "/sops/check_eligibility",
        data=text.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert put.status_code in (200, 201), put.get_json()
    second = client.post("/tasks", json=BODY, headers=account.headers).get_json()
    # then the second task runs the new version, the first keeps the built-in one
    assert first["sop"]["builtin"] is True and second["sop"]["builtin"] is False
    assert second["title"] == "Our own eligibility check" != first["title"]
    assert "Our own eligibility check" in second["instructions"]
    # and reading the first task back still names the version it was created with
    again = client.get(f"/tasks/{first['id']}", headers=account.headers).get_json()
    assert again["sop"] == first["sop"] and again["title"] == first["title"]
