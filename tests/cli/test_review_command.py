"""`understudy tasks review`, `tasks retry` and `understudy settings` (through the Python
client) against the real API on a loopback port."""

from __future__ import annotations

from cli.main import main
from shared import tasks as task_queries
from shared.tasks import TaskStatus
from tests.api.test_review_api import _paused_task
from tests.cli.test_remote_commands import _json, remote  # noqa: F401 - a fixture


def test_review_reject_and_a_409_for_a_decided_task(remote, runtime, client, account, capsys):  # noqa: F811
    # given a task paused for review
    task_id = str(_paused_task(runtime, client, account))

    # when it is rejected from the command line
    task = _json(capsys, "tasks", "review", task_id, "reject", "--note", "Duplicate of 41",
                 "--reviewer", "Dana")  # fmt: skip

    # then it ended with the note, and the reviewer is recorded
    assert task["status"] == "completed_with_issues" and "Duplicate of 41" in task["notes"]
    assert task["review"]["reviewer"].startswith("Dana (API key us_")
    # and deciding again prints the 409's code and exits 1
    assert main(["tasks", "review", task_id, "approve"]) == 1
    assert "not_pending_review" in capsys.readouterr().err


def test_settings_set_changes_only_what_it_names(remote, capsys):  # noqa: F811
    # given a new account's settings
    assert _json(capsys, "settings", "get") == {
        "retention_days": 90, "review_required_types": [], "review_timeout_hours": 168
    }  # fmt: skip

    # when the retention is set, then the review types and their hours
    assert _json(capsys, "settings", "set", "--retention-days", "30")["retention_days"] == 30
    settings = _json(capsys, "settings", "set", "--review-types", "submit_claim, ",
                     "--review-timeout-hours", "24")  # fmt: skip

    # then each call changed its own settings only
    assert settings == {
        "retention_days": 30, "review_required_types": ["submit_claim"], "review_timeout_hours": 24
    }  # fmt: skip
    # and a retention out of range names its field and exits 1
    assert main(["settings", "set", "--retention-days", "0"]) == 1
    assert "retention_days: must be a number of days from 1 to 3650" in capsys.readouterr().err


def test_tasks_retry_sends_a_failed_task_again(remote, runtime, capsys):  # noqa: F811
    # given a check that failed
    created = _json(capsys, "tasks", "create", "check_eligibility", "--data",
                    "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15")  # fmt: skip
    with runtime.pool.connection() as conn:
        assert task_queries.finish_task(conn, created["id"], TaskStatus.FAILED, "timed out")

    # when it is sent again from the command line
    again = _json(capsys, "tasks", "retry", str(created["id"]))

    # then a new task with the same data names the old one; sending the new one again is refused
    assert again["retry_of"] == created["id"] and again["data"] == created["data"]
    assert main(["tasks", "retry", str(again["id"])]) == 1
    assert "not_retryable" in capsys.readouterr().err
