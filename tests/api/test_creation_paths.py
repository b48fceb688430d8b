"""Every way a creation is stored answers, numbers and audits a task alike.

- The first creation of a type in a process reads what to validate against, then sends the
  INSERT in the same transaction, in a pipeline.
- The next ones are one statement (``CALL create_task_within``): the task committed, then its
  audit entry.
- One with an Idempotency-Key stores its answer in the task's transaction, in a pipeline.
"""

from __future__ import annotations

import io

import psycopg
import pytest

from api import tasks as task_routes

DATA = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
BODY = {"type": "check_eligibility", "data": DATA}


def test_every_way_of_storing_a_task_answers_numbers_and_audits_it_alike(
    client, account, monkeypatch
):
    # given a process that has created no task yet
    monkeypatch.setattr(task_routes, "_LAST_CHECKED", {})
    # when it makes a first creation (read first), a second (one statement), one with an
    # Idempotency-Key, and one with a file
    first = client.post("/tasks", json=BODY, headers=account.headers)
    second = client.post("/tasks", json=BODY, headers=account.headers)
    keyed = client.post("/tasks", json=BODY, headers={**account.headers, "Idempotency-Key": "k1"})
    with_file = client.post(
        "/tasks",
        data={**BODY, "files": [(io.BytesIO(b"%PDF-1.4 card"), "card.pdf", "application/pdf")]},
        headers=account.headers,
        content_type="multipart/form-data",
    )
    answers = [response.get_json() for response in (first, second, keyed, with_file)]
    # then each is answered alike, numbered in order
    assert [r.status_code for r in (first, second, keyed, with_file)] == [200] * 4, answers
    assert [a["task_number"] for a in answers] == [1, 2, 3, 4]
    assert len({tuple(sorted(a)) for a in answers}) == 1
    assert {(a["status"], a["title"], a["sop"]["builtin"]) for a in answers} == {
        ("pending", "Check eligibility and benefits", True)
    }
    assert [len(a["files"]) for a in answers] == [0, 0, 0, 1]
    assert with_file.get_json()["files"][0] == {
        **with_file.get_json()["files"][0],
        "filename": "card.pdf",
        "content_type": "application/pdf",
        "size": len(b"%PDF-1.4 card"),
    }
    # and each is stored as it was answered, with one audit entry per creation naming it
    for answer in answers:
        stored = client.get(f"/tasks/{answer['id']}", headers=account.headers).get_json()
        assert stored["status"] in ("pending", "dispatching")  # its message sent, or not yet
        moved = {"status": None, "updatedAt": None}
        assert {**stored, **moved} == {**answer, **moved}
    entries = client.get("/audit-log", headers=account.headers).get_json()["data"]
    created = [e for e in entries if e["action"] == "POST /tasks"]
    assert [(e["target"], e["detail"]) for e in reversed(created)] == [
        ("/tasks", {"status": 200, "task_id": answer["id"]}) for answer in answers
    ]


@pytest.mark.parametrize("keyed", [False, True], ids=["one statement", "idempotency key"])
def test_a_task_is_on_disk_when_its_200_is_sent(client, account, runtime, keyed):
    # given a process that has made its first creation (the next ones are one statement)
    assert client.post("/tasks", json=BODY, headers=account.headers).status_code == 200
    unflushed = 0
    with psycopg.connect(runtime.database_url, autocommit=True) as observer:
        for n in range(20):
            # when a task is created
            key = {"Idempotency-Key": f"batch-{n}"} if keyed else {}
            response = client.post("/tasks", json=BODY, headers={**account.headers, **key})
            assert response.status_code == 200
            # then PostgreSQL has flushed its log past it before the answer: nothing written
            # since waits for the disk (a commit that did not wait leaves its record unflushed
            # for up to wal_writer_delay, 200 ms)
            unflushed += observer.execute(
                "SELECT pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()"
            ).fetchone()[0]
    # (a background write between the answer and the reading may come along now and then)
    assert unflushed <= 2, f"{unflushed} of 20 creations answered before the disk had them"
