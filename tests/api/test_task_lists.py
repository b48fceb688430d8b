"""GET /tasks with status filters: one range per status, merged newest first, paged by cursor."""

from __future__ import annotations

import pytest

from tests.plans import PLAN_MODES, nodes_on, rows_read

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
BODY = {"type": "check_eligibility", "data": ELIGIBILITY}
STATUSES = ["failed", "completed", "canceled", "failed", "completed", "pending", "failed"]


def test_several_statuses_merge_newest_first_across_pages(client, make_account, runtime):
    # given tasks of several statuses, and another account's failed task
    account, other = make_account("Lister"), make_account("Other")
    ids = [
        client.post("/tasks", json=BODY, headers=account.headers).get_json()["id"] for _ in STATUSES
    ]
    foreign = client.post("/tasks", json=BODY, headers=other.headers).get_json()["id"]
    with runtime.pool.connection() as conn:
        for task_id, status in [*zip(ids, STATUSES, strict=True), (foreign, "failed")]:
            conn.execute("UPDATE tasks SET status = %s WHERE id = %s", (status, task_id))
    wanted = [i for i, s in zip(ids, STATUSES, strict=True) if s in ("failed", "canceled")][::-1]
    # when the account pages through status=failed,canceled (and a repeated value) two at a time
    seen, cursor = [], None
    while True:
        query = "/tasks?status=failed,canceled,failed&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = client.get(query, headers=account.headers).get_json()
        seen += [t["id"] for t in page["data"]]
        assert all(t["status"] in ("failed", "canceled") for t in page["data"])
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    # then it sees exactly its own matching tasks, newest first, each once
    assert seen == wanted
    # and a single status, and a status with a type filter, give the same as filtering by hand
    only_completed = client.get("/tasks?status=completed", headers=account.headers).get_json()
    assert [t["id"] for t in only_completed["data"]] == [
        i for i, s in zip(ids, STATUSES, strict=True) if s == "completed"
    ][::-1]
    typed = client.get(
        "/tasks?status=pending&type=check_eligibility,submit_claim", headers=account.headers
    ).get_json()
    assert [t["id"] for t in typed["data"]] == [ids[5]]


def _load(
    runtime, account, count: int, status_sql: str, first: int = 1,
    type_sql: str = "'check_eligibility'",
) -> None:  # fmt: skip
    """``count`` tasks numbered from ``first``, their status ``status_sql`` of g (1..count)."""
    with runtime.pool.connection() as conn:
        conn.execute(
            f"""
            INSERT INTO tasks (account_id, task_number, type, status, title, instructions,
                               sop_id, data)
            SELECT %(account)s, %(first)s + g, {type_sql}, {status_sql},
                   'Check eligibility', 'Read the plan.', (SELECT min(id) FROM sops), %(data)s
              FROM generate_series(1, %(count)s) AS g
            """,
            {"account": account.id, "first": first, "count": count, "data": ELIGIBILITY},
        )


def _page_plan(
    runtime, account, statuses: list[str], mode: str = "custom", types: list[str] | None = None
) -> list[dict]:
    """The nodes on tasks of the first page's plan, run, with fresh planner statistics."""
    from shared.tasks import list_tasks_query

    sql, params = list_tasks_query(
        account.id, before_id=None, limit=51, statuses=statuses, types=types or []
    )
    with runtime.pool.connection() as conn:
        return nodes_on(conn, "tasks", sql, params, mode)


def test_a_status_list_reads_one_index_range_however_many_tasks_the_account_has(
    client, account, runtime
):
    # given an account with 20,000 tasks, 4 % of them failed
    client.post("/tasks", json=BODY, headers=account.headers)  # the SOP row the rest point at
    _load(runtime, account, 20_000, "CASE WHEN g %% 100 < 4 THEN 'failed' ELSE 'completed' END")
    # when the first page of its failed tasks is planned and run
    on_tasks = _page_plan(runtime, account, ["failed"])
    # then tasks is never scanned whole: the page is one range of the (account, status, id) index,
    # read no further than the page, and each row is then fetched by its key
    assert on_tasks and all(n["Node Type"] != "Seq Scan" for n in on_tasks)
    ranges = [n for n in on_tasks if n.get("Index Name") == "tasks_account_status_id"]
    assert ranges and all(n["Actual Rows"] * n["Actual Loops"] <= 51 for n in ranges)


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("status", ["completed", "failed", "dispatching"])
def test_a_status_list_reads_one_page_even_behind_a_batch_of_newer_tasks_in_another_status(
    client, account, runtime, status, mode
):
    # given an account with 20,000 finished tasks (most of them completed), and a batch of
    # 2,000 newer ones still dispatching: the newest tasks are not the common status
    client.post("/tasks", json=BODY, headers=account.headers)
    _load(runtime, account, 20_000, "CASE WHEN g %% 100 < 4 THEN 'failed' ELSE 'completed' END")
    _load(runtime, account, 2_000, "CASE WHEN g %% 100 < 99 THEN 'dispatching' ELSE 'failed' END",
          first=30_000)  # fmt: skip
    # when the first page of one status is planned and run (as a custom or a generic plan)
    on_tasks = _page_plan(runtime, account, [status], mode)
    # then no scan of tasks reads rows only to drop them: the page's range is read from the
    # (account, status, id) index, no further than the page, whatever lies newer
    assert [n.get("Rows Removed by Filter", 0) for n in on_tasks] == [0] * len(on_tasks)
    ranges = [n for n in on_tasks if n.get("Index Name") == "tasks_account_status_id"]
    assert ranges and all(n["Actual Rows"] * n["Actual Loops"] <= 51 for n in ranges)


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize(
    "types", [["submit_appeal"], ["check_eligibility"], ["submit_appeal", "submit_claim"]]
)
def test_a_type_list_reads_one_page_however_rare_the_type(client, account, runtime, types, mode):
    # given an account whose 20,000 tasks are almost all eligibility checks, with an appeal
    # every 500th task and claims only long ago
    client.post("/tasks", json=BODY, headers=account.headers)
    _load(runtime, account, 2_000, "'completed'", first=1, type_sql="'submit_claim'")
    appeal_every_500th = "CASE WHEN g %% 500 = 0 THEN 'submit_appeal' ELSE 'check_eligibility' END"
    _load(runtime, account, 20_000, "'completed'", first=10_000, type_sql=appeal_every_500th)
    # when the first page of some types (no status) is planned and run
    on_tasks = _page_plan(runtime, account, [], mode, types=types)
    # then it reads a page from each type's range and the page's rows by their keys, and no
    # more, whatever lies newer
    assert on_tasks and all(n["Node Type"] != "Seq Scan" for n in on_tasks)
    assert rows_read(on_tasks) <= 51 * (len(types) + 1)


def test_a_batch_filter_lists_that_batchs_tasks_with_the_other_filters(
    client, make_account, runtime
):
    # given a batch of five checks, two of which failed, beside a lone task of the same account
    account, other = make_account("Lister"), make_account("Other")
    made = client.post("/tasks/batch", json={"tasks": [BODY] * 5}, headers=account.headers)
    batch = made.get_json()
    ids = [t["id"] for t in batch["data"]]
    lone = client.post("/tasks", json=BODY, headers=account.headers).get_json()["id"]
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET status = 'failed' WHERE id = ANY(%s)", ([ids[1], ids[3], lone],)
        )
    # when the batch's failed tasks are listed, and all its tasks two at a time
    failed = client.get(f"/tasks?batch={batch['batch_id']}&status=failed", headers=account.headers)
    seen, cursor = [], None
    while True:
        query = f"/tasks?batch={batch['batch_id']}&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = client.get(query, headers=account.headers).get_json()
        seen += [t["id"] for t in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    # then they are the batch's own, newest first, never the lone task
    assert [t["id"] for t in failed.get_json()["data"]] == [ids[3], ids[1]]
    assert seen == ids[::-1]
    # and another account's batch lists nothing, and a batch id must be a number
    theirs = client.get(f"/tasks?batch={batch['batch_id']}", headers=other.headers).get_json()
    assert theirs["data"] == []
    bad = client.get("/tasks?batch=seven", headers=account.headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["details"][0]["field"] == "batch"


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_a_batch_list_reads_the_batch_not_the_accounts_history(client, account, runtime, mode):
    # given a batch of three, and 20,000 completed tasks of the account made after it
    made = client.post("/tasks/batch", json={"tasks": [BODY] * 3}, headers=account.headers)
    batch_id = made.get_json()["batch_id"]
    _load(runtime, account, 20_000, "'completed'", first=4)
    from shared.tasks import list_tasks_query

    sql, params = list_tasks_query(
        account.id, before_id=None, limit=51, statuses=["completed"], types=[], batch_id=batch_id
    )
    # when its first page is planned and run, then tasks is read only for the batch's members
    with runtime.pool.connection() as conn:
        on_tasks = nodes_on(conn, "tasks", sql, params, mode)
    assert on_tasks and all(n["Node Type"] != "Seq Scan" for n in on_tasks)
    assert rows_read(on_tasks) <= 3 * 2


@pytest.mark.parametrize("batch", ["%C2%B2", "%D9%A3", "1%C2%B2"])
def test_a_batch_filter_of_digits_that_are_not_ascii_is_a_422(client, account, batch):
    # "²" is a digit to str.isdigit() that int() refuses; "٣" one that int() reads as 3
    response = client.get(f"/tasks?batch={batch}", headers=account.headers)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"][0]["field"] == "batch"


def test_tasks_are_listed_by_when_they_were_created_with_the_other_filters(
    client, account, runtime
):
    # given four tasks created on three days (the last two on the same day), one of them failed
    ids = [client.post("/tasks", json=BODY, headers=account.headers).get_json()["id"]
           for _ in range(4)]  # fmt: skip
    with runtime.pool.connection() as conn:
        times = ("2026-11-30T23:30:00Z", "2026-12-01T08:00:00Z", "2026-12-02T09:00:00Z",
                 "2026-12-02T17:00:00Z")  # fmt: skip
        for task_id, at in zip(ids, times, strict=True):
            conn.execute("UPDATE tasks SET created_at = %s WHERE id = %s", (at, task_id))
        conn.execute("UPDATE tasks SET status = 'failed' WHERE id = %s", (ids[2],))

    def listed(query: str) -> list[int]:
        response = client.get(f"/tasks?{query}", headers=account.headers)
        assert response.status_code == 200, response.get_json()
        return [t["id"] for t in response.get_json()["data"]]

    # when they are listed by creation time (a date is its first instant in UTC; an offset is
    # honoured; since is inclusive, before is not), with the other filters, page by page
    assert listed("created_since=2026-12-01") == [ids[3], ids[2], ids[1]]
    assert listed("created_since=2026-12-01&created_before=2026-12-02") == [ids[1]]
    assert listed("created_before=2026-12-01T03:31:00%2B04:00") == [ids[0]]
    assert listed("created_since=2026-12-02T09:00:00Z") == [ids[3], ids[2]]
    assert listed("created_since=2026-12-02t09:00:00z&status=failed") == [ids[2]]
    page = client.get("/tasks?created_since=2026-12-01&limit=2", headers=account.headers)
    cursor = page.get_json()["next_cursor"]
    assert listed(f"created_since=2026-12-01&limit=2&cursor={cursor}") == [ids[1]]


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-12-01T08:00:00", "2026-13-01", "12/01/2026", "%00"]
)
def test_a_creation_time_filter_that_is_no_time_with_its_offset_is_a_422(client, account, value):
    for name in ("created_since", "created_before"):
        response = client.get(f"/tasks?{name}={value}", headers=account.headers)
        if value == "%00":  # a NUL anywhere in the URL is refused before any filter is read
            assert response.status_code == 400
            continue
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.get_json()["error"]["details"][0]["field"] == name
