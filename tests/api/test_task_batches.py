"""POST /tasks/batch: many tasks in one call, all stored or none, each sent to the workers."""

from __future__ import annotations

import dataclasses
import json
import threading

import redis

from shared.celery import QUEUES, RUN_TASK
from shared.tasks import TaskStatus, finish_task

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
JOHN = {"member_id": "W200000002", "patient": "John Roe", "dob": "1985-06-30"}
PAID = "claim_number: CLM-PAID-0001"


def _batch(client, account, tasks, **headers):
    return client.post(
        "/tasks/batch", json={"tasks": tasks}, headers={**account.headers, **headers}
    )


def _stored(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT id, task_number, type, status FROM tasks ORDER BY id"
        ).fetchall()


def _queued_ids(runtime) -> list[int]:
    """The task ids on the agent queue, in the order workers take them (from the list's end)."""
    entries = redis.Redis.from_url(runtime.settings.redis_url).lrange(QUEUES[RUN_TASK], 0, -1)
    return [json.loads(json.loads(e)["headers"]["argsrepr"])[0] for e in reversed(entries)]


def test_a_batch_stores_every_task_in_order_and_queues_each(client, account, runtime):
    # given three tasks of two types, with data as text and as an object
    tasks = [
        {"type": "check_eligibility", "data": JANE},
        {"type": "check_eligibility", "data": JOHN},
        {"type": "check_claim_status", "data": PAID},
    ]
    # when they are sent as one batch
    response = _batch(client, account, tasks)
    # then each comes back as POST /tasks would answer it, in the order sent
    assert response.status_code == 200, response.get_json()
    created = response.get_json()["data"]
    assert [t["type"] for t in created] == [t["type"] for t in tasks]
    assert [t["task_number"] for t in created] == [1, 2, 3]
    assert {t["status"] for t in created} == {"pending"}
    assert "W200000002" in created[1]["instructions"]
    read = client.get(f"/tasks/{created[2]['id']}", headers=account.headers).get_json()
    assert {**read, "status": "pending"} == created[2]  # read after its message was sent
    # and every one is stored and on the agent queue, to be taken in that order
    assert [(r["id"], r["status"]) for r in _stored(runtime)] == [
        (t["id"], "dispatching") for t in created
    ]
    assert _queued_ids(runtime) == [t["id"] for t in created]
    # and the call is one audit entry naming them all
    [entry] = client.get("/audit-log", headers=account.headers).get_json()["data"]
    assert entry["action"] == "POST /tasks/batch"
    assert entry["detail"]["task_ids"] == [t["id"] for t in created]
    assert entry["detail"]["batch_id"] == response.get_json()["batch_id"]


def test_one_bad_task_stores_none_and_every_problem_is_listed(client, account, runtime):
    # given a batch whose second task lacks its member and whose third has an unknown type
    tasks = [
        {"type": "check_eligibility", "data": JANE},
        {"type": "check_eligibility", "data": "patient: Jane Doe\nDOB: 1990-01-15"},
        {"type": "check_everything", "data": JANE},
        {"type": "check_eligibility", "data": "member_id: W1\nDOB: not a date"},
    ]
    response = _batch(client, account, tasks)
    # then it is refused with a 422 naming each bad task and field
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert error["message"] == "3 of the 4 tasks are not valid; none was created."
    fields = {(p["task"], p["field"]) for p in error["details"]}
    assert (1, "tasks.1.member_id") in fields
    assert (2, "tasks.2.type") in fields
    assert (3, "tasks.3.dob") in fields and (3, "tasks.3.patient") in fields
    assert all(p["message"] and p["code"] == "validation_failed" for p in error["details"])
    # and nothing was stored, queued or audited, the valid first task included
    assert _stored(runtime) == []
    assert _queued_ids(runtime) == []
    assert client.get("/audit-log", headers=account.headers).get_json()["data"] == []


def test_a_malformed_task_is_listed_with_every_other_tasks_problems(client, account, runtime):
    # given a batch with a task missing its patient, then tasks that are not a task's shape
    tasks = [
        {"type": "check_eligibility", "data": JANE},
        {"type": "check_eligibility", "data": "member_id: W100000001"},
        {"type": "check_eligibility", "data": 5},
        "check_eligibility",
    ]
    response = _batch(client, account, tasks)
    # then one 422 lists them all, each problem naming its task and the code it would get alone
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["message"] == "3 of the 4 tasks are not valid; none was created."
    fields = [(p["task"], p["field"], p["code"]) for p in error["details"]]
    assert (1, "tasks.1.patient", "validation_failed") in fields
    assert (2, "tasks.2.data", "validation_failed") in fields
    assert (3, "tasks.3", "validation_failed") in fields
    assert {task for task, _, _ in fields} == {1, 2, 3}
    # and nothing was stored
    assert _stored(runtime) == []


def test_a_batch_is_refused_whole_for_its_shape_and_size(client, account, runtime, app):
    def error(response, status):
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]

    # an empty batch, a missing list, an entry that is not a task, a task without its type
    assert error(_batch(client, account, []), 422)["details"][0]["field"] == "tasks"
    missing = client.post("/tasks/batch", json={"task": []}, headers=account.headers)
    assert error(missing, 422)["details"][0]["field"] == "tasks"
    assert error(_batch(client, account, ["check_eligibility"]), 422)["details"][0][
        "field"
    ].startswith("tasks.0")
    assert error(_batch(client, account, [{"data": JANE}]), 422)["details"] == [
        {"field": "tasks.0.type", "message": "Missing data for required field.", "task": 0,
         "code": "validation_failed"}
    ]  # fmt: skip
    # other media, and JSON that is not an object
    form = client.post("/tasks/batch", data={"tasks": "x"}, headers=account.headers)
    assert error(form, 415)["code"] == "unsupported_media_type"
    listed = client.post("/tasks/batch", json=[], headers=account.headers)
    assert error(listed, 400)["code"] == "malformed_json"
    # more tasks than MAX_BATCH_TASKS
    over = [{"type": "check_claim_status", "data": PAID}] * (runtime.settings.max_batch_tasks + 1)
    too_many = error(_batch(client, account, over), 413)
    assert too_many["details"] == {"limit": "MAX_BATCH_TASKS", "max": 100}
    # one task's data over MAX_DATA_BYTES names that task
    big = {"type": "check_claim_status", "data": PAID + "\nnote: " + "x" * 70_000}
    too_big = error(
        _batch(client, account, [{"type": "check_claim_status", "data": PAID}, big]), 413
    )
    assert too_big["details"]["limit"] == "MAX_DATA_BYTES" and too_big["details"]["task"] == 1
    assert _stored(runtime) == []


def test_max_batch_tasks_is_a_setting(runtime, account):
    from api import create_app

    small = dataclasses.replace(
        runtime, settings=dataclasses.replace(runtime.settings, max_batch_tasks=2)
    )
    client = create_app(runtime=small).test_client()
    three = [{"type": "check_claim_status", "data": PAID}] * 3
    response = _batch(client, account, three)
    assert response.status_code == 413
    assert response.get_json()["error"]["details"] == {"limit": "MAX_BATCH_TASKS", "max": 2}
    assert _batch(client, account, three[:2]).status_code == 200


def test_an_idempotency_key_replays_the_whole_batch(client, account, runtime):
    tasks = [
        {"type": "check_eligibility", "data": JANE},
        {"type": "check_claim_status", "data": PAID},
    ]
    first = _batch(client, account, tasks, **{"Idempotency-Key": "morning-1"})
    again = _batch(client, account, tasks, **{"Idempotency-Key": "morning-1"})
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert len(_stored(runtime)) == 2 and len(_queued_ids(runtime)) == 2
    # the same key with other tasks, or on POST /tasks, is a conflict
    other = _batch(client, account, tasks[:1], **{"Idempotency-Key": "morning-1"})
    assert other.status_code == 409
    single = client.post("/tasks", json=tasks[0],
                         headers={**account.headers, "Idempotency-Key": "morning-1"})  # fmt: skip
    assert single.status_code == 409
    assert len(_stored(runtime)) == 2
    entries = client.get("/audit-log", headers=account.headers).get_json()["data"]
    assert [e["detail"].get("replayed") for e in entries] == [True, None]
    assert entries[0]["detail"]["task_ids"] == [t["id"] for t in first.get_json()["data"]]


def test_a_type_whose_portal_has_no_login_refuses_the_batch(client, make_account, runtime):
    # given an account with no sandbox login
    account = make_account(sandbox=False)
    response = _batch(client, account, [{"type": "check_claim_status", "data": PAID}] * 2)
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert [(p["task"], p["field"]) for p in details] == [(0, "tasks.0.type"), (1, "tasks.1.type")]
    assert "no credentials" in details[0]["message"]
    assert {p["code"] for p in details} == {"credentials_missing"}
    assert _stored(runtime) == []


def test_another_accounts_batch_numbers_its_own_tasks(client, make_account, runtime):
    first, second = make_account("One"), make_account("Two")
    _batch(client, first, [{"type": "check_claim_status", "data": PAID}] * 2)
    response = _batch(client, second, [{"type": "check_claim_status", "data": PAID}] * 3)
    created = response.get_json()["data"]
    assert [t["task_number"] for t in created] == [1, 2, 3]
    assert {t["accountId"] for t in created} == {second.id}


def _events(runtime, event: str) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT payload FROM webhook_messages WHERE event = %s ORDER BY id", (event,)
        ).fetchall()


def _opt_in(client, account) -> None:
    opted = client.put(
        "/webhook-endpoint",
        json={"filter_types": ["task_finished", "batch.finished"]},
        headers=account.headers,
    )
    assert opted.status_code == 200, opted.get_json()


def test_a_batch_is_followed_until_its_last_task_ends(client, make_account, runtime):
    # given an endpoint that opted in to batch.finished, and a batch of three
    account = make_account(webhook_url="https://hooks.example.test/understudy")
    _opt_in(client, account)
    answer = _batch(client, account, [{"type": "check_claim_status", "data": PAID}] * 3).get_json()
    ids = [t["id"] for t in answer["data"]]
    batch = client.get(f"/batches/{answer['batch_id']}", headers=account.headers).get_json()
    assert batch["size"] == batch["unfinished"] == 3 and batch["finished"] is False
    assert batch["task_ids"] == ids and batch["finishedAt"] is None
    assert batch["counts"] == {"dispatching": 3}
    # when two of its tasks end, nothing is said of the batch yet
    for task_id in ids[:2]:
        assert client.post(f"/tasks/{task_id}/cancel", headers=account.headers).status_code == 200
    batch = client.get(f"/batches/{answer['batch_id']}", headers=account.headers).get_json()
    assert (batch["unfinished"], batch["finished"]) == (1, False)
    assert batch["counts"] == {"canceled": 2, "dispatching": 1}
    assert _events(runtime, "batch.finished") == []
    # when the last one ends, the batch is finished and its one event is written
    client.post(f"/tasks/{ids[2]}/cancel", headers=account.headers)
    batch = client.get(f"/batches/{answer['batch_id']}", headers=account.headers).get_json()
    assert (batch["unfinished"], batch["finished"]) == (0, True) and batch["finishedAt"]
    assert batch["counts"] == {"canceled": 3}
    [event] = _events(runtime, "batch.finished")
    assert event["payload"] == batch
    # beside each task's own task_finished, which names the batch as the task does everywhere
    finished = _events(runtime, "task_finished")
    assert [e["payload"]["batch_id"] for e in finished] == [answer["batch_id"]] * 3
    assert {t["batch_id"] for t in answer["data"]} == {answer["batch_id"]}
    read = client.get(f"/tasks/{ids[0]}", headers=account.headers).get_json()
    listed = client.get(f"/tasks?batch={answer['batch_id']}", headers=account.headers).get_json()
    assert read["batch_id"] == answer["batch_id"]
    assert [t["batch_id"] for t in listed["data"]] == [answer["batch_id"]] * 3
    # while a task made alone belongs to no batch
    alone = client.post("/tasks", json={"type": "check_claim_status", "data": PAID},
                        headers=account.headers).get_json()  # fmt: skip
    assert alone["batch_id"] is None
    assert (
        client.get(f"/tasks/{alone['id']}", headers=account.headers).get_json()["batch_id"] is None
    )


def test_batch_finished_is_opt_in_and_a_batch_is_its_accounts_alone(client, make_account, runtime):
    account, other = make_account("One"), make_account("Two")
    answer = _batch(client, account, [{"type": "check_claim_status", "data": PAID}]).get_json()
    client.post(f"/tasks/{answer['data'][0]['id']}/cancel", headers=account.headers)
    assert client.get(f"/batches/{answer['batch_id']}", headers=account.headers).get_json()[
        "finished"
    ]
    assert _events(runtime, "batch.finished") == []  # the default filter has only task_finished
    for missing in (f"/batches/{answer['batch_id']}", "/batches/999999"):
        response = client.get(missing, headers=other.headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_two_last_tasks_ending_at_once_finish_the_batch_once(client, make_account, runtime):
    # given a batch of two whose tasks end in two transactions at the same moment
    account = make_account(webhook_url="https://hooks.example.test/understudy")
    _opt_in(client, account)
    answer = _batch(client, account, [{"type": "check_claim_status", "data": PAID}] * 2).get_json()
    barrier = threading.Barrier(2)

    def end(task_id: int) -> None:
        with runtime.pool.connection() as conn:
            barrier.wait()
            assert finish_task(conn, task_id, TaskStatus.COMPLETED, "done")

    threads = [threading.Thread(target=end, args=(t["id"],)) for t in answer["data"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then exactly one of them finished the batch
    [event] = _events(runtime, "batch.finished")
    assert event["payload"]["counts"] == {"completed": 2}
    assert event["payload"]["unfinished"] == 0
