"""GET /tasks with status filters: one range per status, merged newest first, paged by cursor."""

from __future__ import annotations

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
