"""POST /tasks/{id}/retry: an ended task sent again as a new task, on the API alone (the tasks
are ended with the workers' own queries)."""

from __future__ import annotations

import io

from shared import tasks as task_queries
from shared.crypto import decrypt_json
from shared.tasks import TaskStatus

from .test_quotas import limited
from .test_sensitive_inputs_api import SOP as SENSITIVE_SOP
from .test_sensitive_inputs_api import _put

APPEAL = "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: Medically necessary"


def _appeal_with_file(client, account) -> dict:
    response = client.post(
        "/tasks",
        data={"type": "submit_appeal", "data": APPEAL,
              "files": (io.BytesIO(b"%PDF the letter"), "letter.pdf")},
        headers=account.headers, content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _end(runtime, task_id: int, status: TaskStatus, *, submitted: bool = False) -> None:
    with runtime.pool.connection() as conn:
        if submitted:
            conn.execute(
                "UPDATE tasks SET irreversible_step = 'Submit appeal',"
                " irreversible_at = now() WHERE id = %s",
                (task_id,),
            )
        assert task_queries.finish_task(conn, task_id, status, "Portal error: timed out")


def _retry(client, account, task_id: int, **headers):
    return client.post(f"/tasks/{task_id}/retry", headers={**account.headers, **headers})


def test_a_failed_task_is_sent_again_with_its_data_and_files(client, account, runtime):
    # given an appeal with a letter that failed
    old = _appeal_with_file(client, account)
    _end(runtime, old["id"], TaskStatus.FAILED)

    # when it is sent again
    response = _retry(client, account, old["id"])

    # then a new pending task carries the same type, data and letter, and names the old one
    assert response.status_code == 200, response.get_json()
    new = response.get_json()
    assert new["id"] != old["id"] and new["retry_of"] == old["id"]
    assert (new["status"], new["type"], new["data"]) == ("pending", "submit_appeal", APPEAL)
    assert [(f["filename"], f["size"]) for f in new["files"]] == [("letter.pdf", 15)]
    # and the old task is as it was, and the audit log names both
    assert client.get(f"/tasks/{old['id']}", headers=account.headers).get_json()["status"] == (
        "failed"
    )
    [entry] = [
        e
        for e in client.get("/audit-log", headers=account.headers).get_json()["data"]
        if e["action"].endswith("/retry")
    ]
    assert entry["detail"]["retry_of"] == old["id"] and entry["detail"]["task_id"] == new["id"]


def test_a_retry_whose_files_would_go_over_the_stored_bytes_limit_is_refused(account, runtime):
    with limited(runtime, max_stored_file_bytes=29) as client:
        # given a failed appeal whose 15-byte letter leaves 14 bytes of room
        old = _appeal_with_file(client, account)
        _end(runtime, old["id"], TaskStatus.FAILED)
        # when it is sent again
        response = _retry(client, account, old["id"])
        # then it is a 409 naming the setting, and nothing is created
        assert response.status_code == 409, response.get_json()
        error = response.get_json()["error"]
        assert (error["code"], error["details"]) == (
            "limit_exceeded", {"limit": "MAX_STORED_FILE_BYTES", "max": 29}
        )  # fmt: skip
        assert [t["id"] for t in client.get("/tasks", headers=account.headers).json["data"]] == [
            old["id"]
        ]
        with runtime.pool.connection() as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM task_files) AS files,"
                " (SELECT count(*) FROM task_retries) AS links"
            ).fetchone()
        assert (counts["files"], counts["links"]) == (1, 0)
    # and with room for the letter, it is sent again
    with limited(runtime, max_stored_file_bytes=30) as client:
        assert _retry(client, account, old["id"]).status_code == 200


def test_a_retry_with_the_same_idempotency_key_creates_once(client, account, runtime):
    old = _appeal_with_file(client, account)
    _end(runtime, old["id"], TaskStatus.CANCELED)
    first, second = (_retry(client, account, old["id"], **{"Idempotency-Key": "again-1"})
                     for _ in range(2))  # fmt: skip
    assert first.status_code == second.status_code == 200
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.get_json()["retry_of"] == old["id"]
    listed = client.get("/tasks", headers=account.headers).get_json()["data"]
    assert len(listed) == 2


def test_a_task_that_reached_its_submit_step_is_never_sent_again(client, account, runtime):
    # given an appeal whose run clicked Submit, then ended with issues
    old = _appeal_with_file(client, account)
    _end(runtime, old["id"], TaskStatus.COMPLETED_WITH_ISSUES, submitted=True)
    # when it is sent again, then 409 says the payer may have it, and nothing is created
    response = _retry(client, account, old["id"])
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "may_have_submitted" and "Submit appeal" in error["message"]
    # and its details name the status, the step and when it ran, as other 409s name the status
    assert error["details"]["status"] == "completed_with_issues"
    assert error["details"]["step"] == "Submit appeal" and error["details"]["at"].endswith("Z")
    assert len(client.get("/tasks", headers=account.headers).get_json()["data"]) == 1


def test_only_an_ended_task_that_did_not_complete_is_sent_again(client, account, make_account,
                                                                 runtime):  # fmt: skip
    running = _appeal_with_file(client, account)
    done = _appeal_with_file(client, account)
    _end(runtime, done["id"], TaskStatus.COMPLETED)
    for task in (running, done):
        response = _retry(client, account, task["id"])
        assert response.status_code == 409, response.get_json()
        error = response.get_json()["error"]
        # its details name the status the task shows, as other 409s do
        shown = client.get(f"/tasks/{task['id']}", headers=account.headers).get_json()["status"]
        assert (error["code"], error["details"]) == ("not_retryable", {"status": shown})
    # and another account's task, or none, is a 404
    assert _retry(client, make_account(), done["id"]).status_code == 404
    assert _retry(client, account, 999_999).status_code == 404


def test_a_sensitive_input_goes_to_the_new_task_encrypted_and_never_shown(client, account, runtime):
    # given a task with a sensitive input, failed
    assert _put(client, account, SENSITIVE_SOP).status_code == 201
    body = {"type": "submit_appeal", "data": "new_username: jdoe\nnew_user_password: pw-Zx81!q"}
    old = client.post("/tasks", json=body, headers=account.headers).get_json()
    _end(runtime, old["id"], TaskStatus.FAILED)

    # when it is sent again
    response = _retry(client, account, old["id"])

    # then the answer shows *** and the new task holds the value encrypted, as the first did
    assert response.status_code == 200, response.get_json()
    assert "pw-Zx81!q" not in response.get_data(as_text=True)
    assert "***" in response.get_json()["data"]
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT secret_inputs FROM tasks WHERE id = %s", (response.get_json()["id"],)
        ).fetchone()
    assert decrypt_json(runtime.fernet, row["secret_inputs"]) == {"new_user_password": "pw-Zx81!q"}


def test_the_two_tasks_name_each_other_when_read_listed_and_sent_by_webhook(
    client, account, runtime
):
    # given a failed appeal sent again twice (the first retry failed too)
    old = _appeal_with_file(client, account)
    _end(runtime, old["id"], TaskStatus.FAILED)
    first = _retry(client, account, old["id"]).get_json()
    _end(runtime, first["id"], TaskStatus.FAILED)
    second = _retry(client, account, old["id"]).get_json()

    # when the tasks are read one by one and in a list
    read = {
        t: client.get(f"/tasks/{t}", headers=account.headers).get_json()
        for t in (old["id"], first["id"], second["id"])
    }
    listed = {
        t["id"]: t
        for t in client.get("/tasks?limit=10", headers=account.headers).get_json()["data"]
    }

    # then the old task names both retries, oldest first, and each retry names the old task
    links = {t: (task["retry_of"], task["retried_as"]) for t, task in read.items()}
    assert links == {
        old["id"]: (None, [first["id"], second["id"]]),
        first["id"]: (old["id"], []),
        second["id"]: (old["id"], []),
    }
    assert {t: (listed[t]["retry_of"], listed[t]["retried_as"]) for t in links} == links
    # and so did the answers: POST /tasks's (none yet), and the retry's
    assert (old["retry_of"], old["retried_as"]) == (None, [])
    assert (second["retry_of"], second["retried_as"]) == (old["id"], [])
    # and when the second retry ends, its task_finished tells the receiver which task it retries
    _end(runtime, second["id"], TaskStatus.COMPLETED_WITH_ISSUES)
    with runtime.pool.connection() as conn:
        message = conn.execute(
            "SELECT payload FROM webhook_messages WHERE task_id = %s AND event = 'task_finished'",
            (second["id"],),
        ).fetchone()
    assert message["payload"]["retry_of"] == old["id"]
