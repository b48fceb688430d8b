"""POST/GET /tasks: the compatibility contract, validation, errors and idempotency."""

from __future__ import annotations

import io
import re
import time

import psycopg
import redis

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
REFERENCE_FIELDS = [
    "id",
    "accountId",
    "task_number",
    "status",
    "handler",
    "title",
    "instructions",
    "startedAt",
    "completedAt",
    "failedAt",
    "notes",
    "createdAt",
    "updatedAt",
]
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _count(runtime, table: str) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def _create(client, account, data=ELIGIBILITY, task_type="check_eligibility", **kw):
    return client.post(
        "/tasks", json={"type": task_type, "data": data}, headers=account.headers, **kw
    )


def test_create_returns_the_reference_task_object(client, account):
    # given an account / when it creates an eligibility task from text data
    response = _create(client, account)
    # then it gets 200 and the task, with the reference fields first and in order
    assert response.status_code == 200
    task = response.get_json()
    assert list(task)[: len(REFERENCE_FIELDS)] == REFERENCE_FIELDS
    assert isinstance(task["id"], int) and task["accountId"] == account.id
    assert task["task_number"] == 1
    assert task["status"] == "pending"
    assert task["handler"] == "agent"
    assert "Eligibility" in task["title"] or "eligibility" in task["title"]
    assert "check_eligibility" in task["instructions"]
    # with the task's own values filled in, and what the agent reads on the portal left as written
    assert "W100000001" in task["instructions"] and "{{ member_id }}" not in task["instructions"]
    assert "{{ coverage.plan }}" in task["instructions"]
    assert ISO_MS_Z.match(task["createdAt"]) and ISO_MS_Z.match(task["updatedAt"])
    assert task["startedAt"] is None and task["completedAt"] is None and task["failedAt"] is None
    assert task["type"] == "check_eligibility" and task["data"] == ELIGIBILITY
    assert task["trajectory_id"]


def test_task_numbers_count_per_account(client, make_account):
    first, second = make_account("One"), make_account("Two")
    responses = [_create(client, first).get_json() for _ in range(2)]
    numbers = [r.get("task_number", r) for r in responses]
    assert numbers == [1, 2]
    assert _create(client, second).get_json()["task_number"] == 1


def test_create_enqueues_on_the_agent_queue_after_commit(client, account, runtime):
    task = _create(client, account).get_json()
    queued = redis.Redis.from_url(runtime.settings.redis_url).lrange("agent", 0, -1)
    assert any(f"[{task['id']}]".encode() in message for message in queued)
    assert client.get(f"/tasks/{task['id']}", headers=account.headers).get_json()["status"] == (
        "dispatching"
    )


def test_json_object_data_is_accepted(client, account):
    data = {"Member ID": "W100000001", "patient": "Doe, Jane", "dob": "01/15/1990"}
    response = _create(client, account, data=data)
    assert response.status_code == 200, response.get_json()


def test_multipart_with_files(client, account):
    response = client.post(
        "/tasks",
        data={
            "type": "check_eligibility",
            "data": ELIGIBILITY,
            "files": [(io.BytesIO(b"%PDF-1.4 card"), "card.pdf", "application/pdf")],
        },
        headers=account.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["files"] == [
        {"id": 1, "filename": "card.pdf", "content_type": "application/pdf", "size": 13}
    ]


def test_files_sent_as_text_are_refused_not_dropped(client, account, runtime):
    # a multipart body whose files field is text, not file parts (a client's mistake)
    response = client.post(
        "/tasks",
        data={"type": "check_eligibility", "data": ELIGIBILITY, "files": "card.pdf"},
        headers=account.headers,
        content_type="multipart/form-data",
    )
    # is refused, naming the field, where the task was made without its file
    error = _error(response, 422, "validation_failed")
    assert [p["field"] for p in error["details"]] == ["files"]
    assert _count(runtime, "tasks") == 0


def test_read_own_task_and_404_for_another_accounts(client, make_account):
    owner, stranger = make_account("Owner"), make_account("Stranger")
    task = _create(client, owner).get_json()
    assert client.get(f"/tasks/{task['id']}", headers=owner.headers).get_json()["id"] == task["id"]
    response = client.get(f"/tasks/{task['id']}", headers=stranger.headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/tasks/999999", headers=owner.headers).status_code == 404


def test_list_is_paginated_and_filtered(client, make_account):
    account, other = make_account("Lister"), make_account("Other")
    ids = [_create(client, account).get_json()["id"] for _ in range(5)]
    _create(client, other)
    first = client.get("/tasks?limit=2", headers=account.headers).get_json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:2] and first["has_more"]
    second = client.get(
        f"/tasks?limit=2&cursor={first['next_cursor']}", headers=account.headers
    ).get_json()
    assert [t["id"] for t in second["data"]] == ids[::-1][2:4]
    rest = client.get(
        f"/tasks?limit=2&cursor={second['next_cursor']}", headers=account.headers
    ).get_json()
    assert [t["id"] for t in rest["data"]] == ids[:1] and not rest["has_more"]
    assert rest["next_cursor"] is None
    filtered = client.get("/tasks?status=failed", headers=account.headers).get_json()
    assert filtered["data"] == []
    by_type = client.get("/tasks?type=check_eligibility", headers=account.headers).get_json()
    assert len(by_type["data"]) == 5


def test_list_rejects_unknown_filters_and_bad_cursors(client, account):
    assert client.get("/tasks?status=bogus", headers=account.headers).status_code == 422
    assert client.get("/tasks?cursor=%%%", headers=account.headers).status_code == 400
    assert client.get("/tasks?limit=0", headers=account.headers).status_code == 400


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def test_401_without_key_with_bad_key_and_with_revoked_key(client, account, runtime):
    from shared.accounts import revoke_api_key

    _error(client.post("/tasks", json={}), 401, "unauthorized")
    _error(
        client.get("/tasks", headers={"Authorization": "Bearer us_nope_nope"}), 401, "unauthorized"
    )
    _error(client.get("/tasks", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    with runtime.pool.connection() as conn:
        assert revoke_api_key(conn, account.api_key)
    _error(client.get("/tasks", headers=account.headers), 401, "unauthorized")


def test_a_key_the_api_remembers_stops_working_once_revoked(client, make_account, runtime):
    from shared.accounts import revoke_api_key

    client.get("/tasks", headers=make_account("Warm-up").headers)  # starts the key listener
    _wait_for_listener(runtime, "understudy listen api_keys")
    for i in range(5):
        # given a key used twice, so the API answers it from memory
        account = make_account(f"Clinic {i}")
        for _ in range(2):
            assert client.get("/tasks", headers=account.headers).status_code == 200
        # when it is revoked, then it is refused as soon as the API hears of it (milliseconds)
        with runtime.pool.connection() as conn:
            assert revoke_api_key(conn, account.api_key)
        deadline = time.monotonic() + 5
        while client.get("/tasks", headers=account.headers).status_code == 200:
            assert time.monotonic() < deadline, "a revoked key kept working"
            time.sleep(0.001)
        _error(client.get("/tasks", headers=account.headers), 401, "unauthorized")


def _wait_for_listener(runtime, name: str) -> None:
    deadline = time.monotonic() + 20
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
            if found:
                return
            time.sleep(0.05)
    raise AssertionError(f"{name!r} never connected")


def test_400_for_malformed_json(client, account, runtime):
    response = client.post(
        "/tasks", data="{not json", headers=account.headers, content_type="application/json"
    )
    _error(response, 400, "malformed_json")
    response = client.post("/tasks", json=[1, 2], headers=account.headers)
    _error(response, 400, "malformed_json")
    assert _count(runtime, "tasks") == 0


def test_415_for_other_media_types(client, account, runtime):
    response = client.post(
        "/tasks", data="type=x", headers=account.headers, content_type="text/plain"
    )
    _error(response, 415, "unsupported_media_type")
    assert _count(runtime, "tasks") == 0


def test_413_for_a_body_over_the_limit(client, account, runtime):
    big = "x" * (runtime.settings.max_request_bytes + 1)
    response = client.post(
        "/tasks", data=big, headers=account.headers, content_type="application/json"
    )
    _error(response, 413, "payload_too_large")
    assert _count(runtime, "tasks") == 0


def test_422_for_an_unknown_type(client, account, runtime):
    error = _error(_create(client, account, task_type="teleport"), 422, "validation_failed")
    [problem] = error["details"]
    assert problem["field"] == "type" and "check_eligibility" in problem["message"]
    assert _count(runtime, "tasks") == 0


def test_422_lists_every_missing_field(client, account, runtime):
    error = _error(_create(client, account, data="note: nothing useful"), 422, "validation_failed")
    fields = {problem["field"] for problem in error["details"]}
    assert {"member_id", "patient", "dob"} <= fields
    assert _count(runtime, "tasks") == 0 and _count(runtime, "sops") == 0


def test_422_for_a_malformed_date(client, account):
    data = "member_id: W100000001\npatient: Jane Doe\nDOB: the day before yesterday"
    error = _error(_create(client, account, data=data), 422, "validation_failed")
    assert [p["field"] for p in error["details"]] == ["dob"]


def test_idempotency_key_replays_and_conflicts(client, account, runtime):
    headers = {**account.headers, "Idempotency-Key": "order-42"}
    first = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=headers
    )
    again = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": ELIGIBILITY + "\nx: y"},
        headers=headers,
    )
    _error(other, 409, "idempotency_conflict")
    assert _count(runtime, "tasks") == 1


def test_each_creation_is_in_the_audit_log_once_and_a_refusal_not_at_all(client, account, runtime):
    # given a creation, its replay under the same Idempotency-Key, and a refused one
    headers = {**account.headers, "Idempotency-Key": "batch-7"}
    body = {"type": "check_eligibility", "data": ELIGIBILITY}
    first = client.post("/tasks", json=body, headers=headers)
    again = client.post("/tasks", json=body, headers=headers)
    _error(_create(client, account, data="note: nothing useful"), 422, "validation_failed")
    # then the two answered calls are recorded once each, naming the key and the task, the
    # replay told apart, and the task exists
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    entries = client.get("/audit-log", headers=account.headers).get_json()["data"]
    prefix = account.api_key[:15]
    task_id = first.get_json()["id"]
    assert [(e["actor"], e["action"], e["target"], e["detail"]) for e in entries] == [
        (
            f"api_key:{prefix}",
            "POST /tasks",
            "/tasks",
            {"status": 200, "task_id": task_id, "replayed": True},
        ),
        (f"api_key:{prefix}", "POST /tasks", "/tasks", {"status": 200, "task_id": task_id}),
    ]
    assert _count(runtime, "tasks") == 1
