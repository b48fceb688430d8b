"""The console's batches: new tasks from a file (all or none, bad rows named by line, a form
sent twice creating once), a batch's page, the list, and who may do what."""

from __future__ import annotations

import io
import re

import pytest

from shared.tasks import TaskStatus, finish_task
from tests.api.test_console import audit_details, audit_rows, form_token, make_user, sign_in

CSV = (
    "type,member_id,patient,dob\n"
    "check_eligibility,W100000001,Jane Doe,1990-01-15\n"
    "check_eligibility,W200000002,John Roe,1985-06-30\n"
    "check_claim_status,,,\n"
)


@pytest.fixture
def operator(runtime, app, account):
    make_user(runtime, account.id, "op@clinic.test", "operator")
    browser = app.test_client()
    assert sign_in(browser, "op@clinic.test").status_code == 303
    return browser


def _send(browser, content: str | bytes, name: str = "clinic-day.csv", form: str | None = None,
          **fields: str):  # fmt: skip
    page = browser.get("/console/batches/new").text if form is None else form
    data = {
        "csrf_token": form_token(page),
        "submission": re.search(r'name="submission" value="([^"]+)"', page).group(1),
        "file": (io.BytesIO(content.encode() if isinstance(content, str) else content), name),
        **fields,
    }
    return browser.post("/console/batches", data=data, content_type="multipart/form-data")


def _tasks(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT id, type, data, status FROM tasks ORDER BY id").fetchall()


def test_a_csv_becomes_one_batch_whose_page_follows_its_tasks(runtime, operator, client, account):
    # given an operator's CSV with a claim status row, whose claim number is on the next line
    content = (
        "type,member_id,patient,dob,claim_number\n"
        "check_eligibility,W100000001,Jane Doe,1990-01-15,\n"
        "check_eligibility,W200000002,John Roe,1985-06-30,\n"
        "check_claim_status,,,,CLM-PAID-0001\n"
    )
    # when it is sent from the "New tasks" form
    sent = _send(operator, content)
    # then the browser goes to the new batch's page
    assert sent.status_code == 303, sent.text
    location = sent.headers["Location"]
    batch_id = int(re.search(r"/console/batches/(\d+)", location).group(1))
    # and the tasks exist in the file's order, as the API shows them
    stored = _tasks(runtime)
    assert [t["type"] for t in stored] == ["check_eligibility"] * 2 + ["check_claim_status"]
    assert "W200000002" in str(stored[1]["data"])
    api_batch = client.get(f"/batches/{batch_id}", headers=account.headers).get_json()
    assert api_batch["task_ids"] == [t["id"] for t in stored] and api_batch["size"] == 3
    # and the batch page lists them with its progress
    page = operator.get(location).text
    assert "Tasks created" in page
    assert "0 of 3 ended" in page and 'data-poll="/console/batches/' in page
    assert page.index(f'data-task-id="{stored[0]["id"]}"') < page.index(
        f'data-task-id="{stored[2]["id"]}"'
    )
    # and the action is the operator's in the audit log, naming the batch and its tasks
    assert ("op@clinic.test", "batch.create") in {
        (r["actor"], r["action"]) for r in audit_rows(runtime)
    }
    # and a task's page names its batch and row
    task_page = operator.get(f"/console/tasks/{stored[1]['id']}").text
    assert f"/console/batches/{batch_id}" in task_page and "row 2 of 3" in task_page
    # and once every task has ended, the page says the batch finished and stops polling
    with runtime.pool.connection() as conn:
        for task in stored:
            finish_task(conn, task["id"], TaskStatus.COMPLETED, "Done.")
    page = operator.get(location).text
    assert "3 of 3 ended, finished" in page and "data-poll" not in page
    # and each status's count links to the batch's tasks in that status, and only those
    lone = client.post("/tasks", json={"type": "check_claim_status", "data": "claim_number: X1"},
                       headers=account.headers).get_json()["id"]  # fmt: skip
    link = f"/console/tasks?batch={batch_id}&amp;status=completed"
    assert link in page
    listed = operator.get(link.replace("&amp;", "&")).text
    assert all(f'data-task-id="{t["id"]}"' in listed for t in stored)
    assert f'data-task-id="{lone}"' not in listed and f"batch {batch_id}" in listed
    assert operator.get("/console/tasks?batch=x").status_code == 400
    assert operator.get("/console/tasks?batch=%C2%B2").status_code == 400  # "²": no int()
    listing = operator.get("/console/batches").text
    assert f'data-batch-id="{batch_id}"' in listing


def test_a_file_with_bad_rows_creates_nothing_and_names_each_line(runtime, operator):
    # given a CSV whose second and fourth lines lack what eligibility needs
    content = (
        "member_id,patient,dob\n"
        "W100000001,Jane Doe,1990-01-15\n"
        ",John Roe,1985-06-30\n"
        "W300000003,Ann Poe,1970-02-28\n"
        "W400000004,,not a date\n"
    )
    # when it is sent with one type chosen for every row
    sent = _send(operator, content, type="check_eligibility")
    # then nothing is created, and the page names each bad row by its line in the file
    assert sent.status_code == 422
    assert _tasks(runtime) == []
    problems = re.search(r'<ul class="error" id="batch-problems">(.*?)</ul>', sent.text, re.S)
    assert problems, sent.text
    assert "line 3 member_id" in problems.group(1)
    assert "line 5" in problems.group(1) and "line 2" not in problems.group(1)
    # and the form keeps the chosen type, ready for the fixed file
    assert '<option value="check_eligibility" selected>' in sent.text
    fixed = content.replace(",John Roe", "W200000002,John Roe").replace(
        "W400000004,,not a date", "W400000004,Bo Loe,1966-06-06"
    )
    again = _send(operator, fixed, form=sent.text, type="check_eligibility")
    assert again.status_code == 303, again.text
    assert len(_tasks(runtime)) == 4


def test_the_same_form_sent_twice_creates_its_tasks_once(runtime, operator):
    # given the "New tasks" form, sent once
    form = operator.get("/console/batches/new").text
    first = _send(operator, CSV.replace("check_claim_status,,,\n", ""), form=form)
    assert first.status_code == 303
    # when the same form is sent again (a double click, a reload)
    second = _send(operator, CSV.replace("check_claim_status,,,\n", ""), form=form)
    # then it shows the same batch, and no task was created twice
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    assert len(_tasks(runtime)) == 2
    # and the second sending is audited as a replay of the first, naming its batch
    first_entry, replay = (row["detail"] for row in audit_details(runtime, "batch.create"))
    assert "replayed" not in first_entry and replay["replayed"] is True
    assert replay["batch_id"] == first_entry["batch_id"]
    # and the same form with another file is refused: a new form sends it
    other = _send(operator, "type,member_id,patient,dob\ncheck_eligibility,W9,A B,1990-01-01\n",
                  form=form)  # fmt: skip
    assert other.status_code == 409 and "open a new form" in other.text
    assert len(_tasks(runtime)) == 2


@pytest.mark.parametrize(
    ("content", "name", "said"),
    [
        ("", "empty.csv", "holds no tasks"),
        ("member_id\nW1\n", "no-type.csv", "no task type on line 2"),
        ('{"type": "check_eligibility"\n', "tasks.jsonl", "line 1 is not JSON"),
        (b"type,member_id\n\xff\xfe\n", "latin.csv", "not UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_why(runtime, operator, content, name, said):
    sent = _send(operator, content, name=name)
    assert sent.status_code == 422 and said in sent.text
    assert _tasks(runtime) == []


@pytest.mark.parametrize(
    ("content", "name", "said"),
    [
        ("member_id,patient,dob\nW100000001,Jane\x00 Doe,1990-01-15\n", "nul.csv", "NUL"),
        ('{"type": "check_eligibility", "data": "member_id: W100000001\\npatient: Jane\\u0000'
         ' Doe\\ndob: 1990-01-15"}\n', "nul.jsonl", "NUL"),
        ('{"type": "check_eligibility", "data": {"member_id": "W100000001",'
         ' "patient": "Jane Doe\\ud800", "dob": "1990-01-15"}}\n', "surrogate.jsonl",
         "lone surrogate"),
        ('{"type": "check_eligibility", "data": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
         "deep.jsonl", "line 1 is nested too deep"),
    ],
)  # fmt: skip
def test_a_file_with_text_no_task_can_hold_is_refused_by_its_line(
    runtime, operator, content, name, said
):
    # given a row whose data holds what PostgreSQL cannot store, or is nested past any limit
    sent = _send(operator, content, name=name, type="check_eligibility")
    # then the page says why and names the line (it was a 500), and nothing is created
    assert sent.status_code in (400, 422) and said in sent.text, sent.text
    assert "line 1" in sent.text or "line 2" in sent.text
    assert _tasks(runtime) == []


def test_json_lines_and_a_spreadsheets_byte_order_mark_are_read(runtime, operator):
    lines = '{"type": "check_claim_status", "data": "claim_number: CLM-PAID-0001"}\n'
    assert _send(operator, lines, name="claims.jsonl").status_code == 303
    bom = "\ufeff" + CSV.replace("check_claim_status,,,\n", "")
    assert _send(operator, bom.encode("utf-8")).status_code == 303
    assert [t["type"] for t in _tasks(runtime)] == ["check_claim_status"] + [
        "check_eligibility"
    ] * 2


def test_more_rows_than_a_batch_takes_are_refused_whole(runtime, operator):
    limit = runtime.settings.max_batch_tasks
    rows = "".join(f"W{i:09d},Pat Doe,1990-01-15\n" for i in range(limit + 1))
    sent = _send(operator, "member_id,patient,dob\n" + rows, type="check_eligibility")
    assert sent.status_code == 413 and "MAX_BATCH_TASKS" in sent.text
    assert _tasks(runtime) == []
    # and a file longer than that is refused for its length, unread past the row after it
    # (its 10,000th line is no JSON: reading it all would refuse the file for that instead)
    lines = '{"type": "check_claim_status", "data": "claim_number: CLM-1"}\n' * (limit + 1)
    lines += '{"type": "check_claim_status"}\n' * 9_000 + "not json\n"
    sent = _send(operator, lines, name="claims.jsonl")
    assert sent.status_code == 413 and "MAX_BATCH_TASKS" in sent.text
    assert _tasks(runtime) == []


def test_a_viewer_reads_batches_but_cannot_create_and_another_account_sees_none(
    runtime, app, operator, make_account
):
    # given a batch of the operator's account
    sent = _send(operator, CSV.replace("check_claim_status,,,\n", ""))
    location = sent.headers["Location"]
    # a viewer of the same account reads it, and gets no form
    account_id = _account_of(runtime)
    make_user(runtime, account_id, "viewer@clinic.test", "viewer")
    viewer = app.test_client()
    sign_in(viewer, "viewer@clinic.test")
    assert viewer.get(location).status_code == 200
    assert "New tasks from a file" not in viewer.get("/console/batches").text
    assert viewer.get("/console/batches/new").status_code == 403
    # and another clinic's operator finds no such batch
    other = make_account("Other Clinic")
    make_user(runtime, other.id, "op@other.test", "operator")
    stranger = app.test_client()
    sign_in(stranger, "op@other.test")
    assert stranger.get(location).status_code == 404
    assert 'data-batch-id="' not in stranger.get("/console/batches").text


def _account_of(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT account_id FROM task_batches").fetchone()["account_id"]
