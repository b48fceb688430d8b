"""A refused list filter answers in proportion to the request, however many task types the account
has defined and removed (removed types do not count against MAX_CUSTOM_TYPES)."""

from __future__ import annotations

from shared.sop.library import builtin_sop_text


def _define_and_remove(client, account, count: int) -> None:
    template = builtin_sop_text("check_eligibility")
    for i in range(count):
        name = f"removed_type_{i:04d}_with_a_long_name_to_list_in_a_refusal"
        text = template.replace("task_type: check_eligibility", f"task_type: {name}", 1)
        put = client.put(
            f"/sops/{name}", data=text, content_type="application/yaml", headers=account.headers
        )
        assert put.status_code in (200, 201), put.get_data(as_text=True)[:300]
        assert client.delete(f"/sops/{name}", headers=account.headers).status_code == 200


def test_a_refused_type_filter_stays_small_with_many_removed_types(client, account):
    _define_and_remove(client, account, 60)
    unknown = ",".join(f"{i:x}" for i in range(800))  # a query within MAX_URL_BYTES
    response = client.get(f"/tasks?type={unknown}", headers=account.headers)
    assert response.status_code == 422
    assert len(response.get_data()) < 8_000, len(response.get_data())
    (detail,) = response.get_json()["error"]["details"]
    assert detail["field"] == "type"
    assert "'0'" in detail["message"] and "780 more" in detail["message"]
    assert "GET /task-types" in detail["message"]


def test_a_refused_status_filter_still_lists_the_statuses(client, account):
    response = client.get("/tasks?status=done", headers=account.headers)
    assert response.status_code == 422
    (detail,) = response.get_json()["error"]["details"]
    assert "'done'" in detail["message"] and "completed_with_issues" in detail["message"]
