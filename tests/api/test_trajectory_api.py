"""GET /tasks/<id>/trajectory and /artifacts/<id>: steps as the worker records them, per account."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.runner import DbRecorder

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
# The PNG signature and an IHDR chunk: enough for the bytes to be recognisably a PNG.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


def _task(client, account) -> dict:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _record(runtime, task: dict, attempt: int, steps: list[tuple[str, str, bytes | None]]) -> None:
    """Write steps the way the worker does, through its own recorder."""
    recorder = DbRecorder(runtime, task["id"], task["accountId"], attempt, "test-worker")
    for name, status, screenshot in steps:
        recorder.step(
            name,
            started_at=datetime(2025, 3, 20, 14, 0, 1, 250000, tzinfo=UTC),
            duration_ms=420,
            status=status,
            message=f"{name}: {status}",
            screenshot=screenshot,
        )


def test_trajectory_lists_every_step_of_every_attempt_in_order(client, account, runtime):
    # given a task whose first attempt failed on a screenshot-bearing step and second succeeded
    task = _task(client, account)
    _record(runtime, task, 1, [("Sign in", "ok", None), ("Search", "failed", PNG)])
    _record(runtime, task, 2, [("Sign in", "ok", None), ("Search", "ok", None)])
    # when its trajectory is read
    response = client.get(f"/tasks/{task['id']}/trajectory", headers=account.headers)
    # then it has every step, attempt by attempt, and a link to the screenshot
    assert response.status_code == 200
    body = response.get_json()
    assert body["task_id"] == task["id"] and body["trajectory_id"] == task["trajectory_id"]
    assert [(s["attempt"], s["seq"], s["name"], s["status"]) for s in body["steps"]] == [
        (1, 1, "Sign in", "ok"),
        (1, 2, "Search", "failed"),
        (2, 1, "Sign in", "ok"),
        (2, 2, "Search", "ok"),
    ]
    failed = body["steps"][1]
    assert failed["message"] == "Search: failed"
    assert failed["started_at"] == "2025-03-20T14:00:01.250Z" and failed["duration_ms"] == 420
    assert failed["screenshot"] == {
        "id": failed["screenshot"]["id"],
        "url": f"/artifacts/{failed['screenshot']['id']}",
    }
    assert [s["screenshot"] for s in body["steps"] if s is not failed] == [None, None, None]
    # and the link serves the PNG
    artifact = client.get(failed["screenshot"]["url"], headers=account.headers)
    assert artifact.status_code == 200
    assert artifact.mimetype == "image/png" and artifact.data == PNG
    # a screenshot shows patient data: no cache keeps it, as no cache keeps any answer
    assert artifact.headers["Cache-Control"] == "no-store"
    assert task["links"]["trajectory"] == f"/tasks/{task['id']}/trajectory"


def test_a_task_not_yet_run_has_an_empty_trajectory(client, account):
    task = _task(client, account)
    body = client.get(f"/tasks/{task['id']}/trajectory", headers=account.headers).get_json()
    assert body["steps"] == [] and body["trajectory_id"] == task["trajectory_id"]


def test_another_accounts_trajectory_and_artifacts_are_404(client, make_account, runtime):
    # given a task of one account with a screenshot
    owner, stranger = make_account("Owner"), make_account("Stranger")
    task = _task(client, owner)
    _record(runtime, task, 1, [("Search", "failed", PNG)])
    steps = client.get(f"/tasks/{task['id']}/trajectory", headers=owner.headers).get_json()
    url = steps["steps"][0]["screenshot"]["url"]
    # when another account asks for them / then both are 404, as if they did not exist
    for path in (f"/tasks/{task['id']}/trajectory", url):
        response = client.get(path, headers=stranger.headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/tasks/999999/trajectory", headers=owner.headers).status_code == 404
    assert client.get("/artifacts/999999", headers=owner.headers).status_code == 404


def test_trajectory_and_artifacts_need_a_key(client, account, runtime):
    task = _task(client, account)
    _record(runtime, task, 1, [("Search", "failed", PNG)])
    for path in (f"/tasks/{task['id']}/trajectory", "/artifacts/1"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
