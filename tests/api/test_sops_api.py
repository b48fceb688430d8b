"""/sops: the active SOP per type, new versions, validation with line numbers, revert."""

from __future__ import annotations

import pytest

from shared.portals import portal_address
from shared.sop.library import builtin_sop_text
from shared.sop.task_types import TASK_TYPES
from tests.dispatcher.support import with_settings

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
BUILTIN = builtin_sop_text("check_eligibility")
YAML = {"Content-Type": "application/yaml"}


def _custom(title: str = "Our eligibility check", text: str = BUILTIN) -> str:
    return text.replace("title: Check eligibility and benefits", f"title: {title}")


def _put(client, account, text: str, task_type: str = "check_eligibility", **headers):
    return client.put(
        f"/sops/{task_type}",
        data=text.encode(),
        headers={**account.headers, **YAML, **headers},
    )


def _sop_rows(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM sops").fetchone()["n"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["error"]["code"] == code
    return body["error"]


def test_list_shows_the_builtin_sop_of_every_type(client, account):
    # given a new account / when it lists its SOPs
    response = client.get("/sops", headers=account.headers)
    # then there is one built-in entry per task type, with a title and a summary
    assert response.status_code == 200
    entries = response.get_json()["data"]
    assert [e["task_type"] for e in entries] == list(TASK_TYPES)
    for entry in entries:
        assert entry["builtin"] is True and entry["version"] >= 1
        assert entry["title"] and entry["task_type"] in entry["summary"]
        assert entry["created_at"].endswith("Z")
        assert "body" not in entry


def test_read_one_sop_gives_its_text_summary_and_empty_history(client, account):
    response = client.get("/sops/check_eligibility", headers=account.headers)
    assert response.status_code == 200
    sop = response.get_json()
    assert sop["builtin"] is True
    assert sop["body"] == BUILTIN
    assert sop["summary"].startswith("Check eligibility and benefits (check_eligibility)")
    assert sop["history"] == []


def test_unknown_task_type_is_404(client, account):
    _error(client.get("/sops/check_horoscope", headers=account.headers), 404, "not_found")
    # A new name with another type's document is refused (a new name defines a custom type).
    _error(_put(client, account, BUILTIN, task_type="check_horoscope"), 422, "validation_failed")
    _error(client.delete("/sops/check_horoscope", headers=account.headers), 404, "not_found")


def test_put_creates_numbered_versions_newest_active(client, account):
    # given two successive custom SOPs
    first = _put(client, account, _custom("Version one"))
    second = _put(client, account, _custom("Version two"))
    # then each is a new version, 201, and the newest is active with the older in the history
    assert first.status_code == 201 and first.get_json()["version"] == 1
    assert second.status_code == 201 and second.get_json()["version"] == 2
    active = client.get("/sops/check_eligibility", headers=account.headers).get_json()
    assert active["version"] == 2 and active["builtin"] is False
    assert active["title"] == "Version two" and active["body"] == _custom("Version two")
    assert [h["version"] for h in active["history"]] == [2, 1]
    listed = client.get("/sops", headers=account.headers).get_json()["data"]
    eligibility = next(e for e in listed if e["task_type"] == "check_eligibility")
    assert (eligibility["version"], eligibility["builtin"]) == (2, False)


def test_putting_the_active_text_again_stores_nothing(client, account, runtime):
    _put(client, account, _custom())
    rows = _sop_rows(runtime)
    again = _put(client, account, _custom())
    assert again.status_code == 200 and again.get_json()["version"] == 1
    assert _sop_rows(runtime) == rows


@pytest.mark.parametrize("content_type", ["text/yaml", "text/plain", "application/x-yaml"])
def test_put_accepts_yaml_as_any_text_type(client, account, content_type):
    response = _put(client, account, _custom(), **{"Content-Type": content_type})
    assert response.status_code == 201, response.get_json()


def test_put_accepts_json_with_the_yaml_in_sop(client, account):
    response = client.put(
        "/sops/check_eligibility", json={"sop": _custom("From JSON")}, headers=account.headers
    )
    assert response.status_code == 201
    assert response.get_json()["title"] == "From JSON"


def test_broken_yaml_is_422_naming_the_line(client, account, runtime):
    # given YAML that does not parse (a mapping value on line 3)
    text = "task_type: check_eligibility\ntitle: Broken\n  steps: [\n"
    # when it is PUT / then 422 with the line and the problem, and nothing is stored
    error = _error(_put(client, account, text), 422, "validation_failed")
    assert error["details"][0]["line"] == 3
    assert "YAML" in error["details"][0]["message"]
    assert _sop_rows(runtime) == 0


def test_unknown_step_kind_is_422_naming_the_line_and_step(client, account, runtime):
    text = BUILTIN.replace("- click: {button: Search}", "- teleport: {button: Search}")
    line = BUILTIN.splitlines().index("  - click: {button: Search}") + 1
    error = _error(_put(client, account, text), 422, "validation_failed")
    problem = next(d for d in error["details"] if d["path"].startswith("steps["))
    assert problem["line"] == line
    assert "action" in problem["message"]
    assert client.get("/sops/check_eligibility", headers=account.headers).get_json()["builtin"]


def test_an_unknown_answer_to_dialogs_is_422_naming_the_line(client, account, runtime):
    # given a step that says to answer its dialogs "cancel", and settings that say "maybe"
    text = BUILTIN.replace(
        "  - click: {button: Search}\n", "  - click: {button: Search}\n    dialogs: cancel\n"
    ).replace("  screenshots: failures\n", "  screenshots: failures\n  dialogs: maybe\n")
    lines = text.splitlines()

    # when it is stored / then 422, naming both lines and the two answers there are
    details = _error(_put(client, account, text), 422, "validation_failed")["details"]
    found = {d["line"]: d["message"] for d in details}
    assert set(found) == {
        lines.index("    dialogs: cancel") + 1,
        lines.index("  dialogs: maybe") + 1,
    }
    assert all("must be accept" in m and "or dismiss" in m for m in found.values()), details
    assert _sop_rows(runtime) == 0

    # while the answers there are are stored
    good = text.replace("dialogs: cancel", "dialogs: dismiss").replace("maybe", "accept")
    response = _put(client, account, good)
    assert response.status_code == 201, response.get_json()
    assert 'Click button "Search" [dialogs answered Cancel]' in response.get_json()["summary"]


def test_a_mistyped_filter_is_422_naming_its_line_not_a_500(client, account, runtime):
    # given a step whose value names a filter there is no such thing as
    text = BUILTIN.replace("{{ dob | us_date }}", "{{ dob | us_dat }}")
    line = text.splitlines().index('  - fill: {label: Date of Birth, value: "{{ dob | us_dat }}"}')
    # when it is validated or stored, then it is refused, naming the line and the filter
    for response in (
        client.post("/sops/validate", json={"sop": text}, headers=account.headers),
        _put(client, account, text),
    ):
        [problem] = _error(response, 422, "validation_failed")["details"]
        assert problem["line"] == line + 1 and "No filter named 'us_dat'" in problem["message"]
    assert _sop_rows(runtime) == 0


def test_a_name_nothing_gives_is_a_warning_naming_its_line_and_the_likely_name(
    client, account, runtime
):
    # given a step that reads a misspelt input
    text = BUILTIN.replace("{{ dob | us_date }}", "{{ dbo | us_date }}")
    line = text.splitlines().index('  - fill: {label: Date of Birth, value: "{{ dbo | us_date }}"}')
    # when it is validated or stored, then it is valid, and the warning says where and what
    for response in (
        client.post("/sops/validate", json={"sop": text}, headers=account.headers),
        _put(client, account, text),
    ):
        assert response.status_code in (200, 201)
        [warning] = response.get_json()["warnings"]
        assert warning.startswith(f"line {line + 1} (steps[")
        assert "'dbo' is no input" in warning and "did you mean 'dob'?" in warning
    assert _sop_rows(runtime) == 1


def test_sop_for_another_type_than_the_url_is_422(client, account):
    error = _error(
        _put(client, account, BUILTIN, task_type="submit_claim"), 422, "validation_failed"
    )
    assert error["details"] == [
        {
            "field": "task_type",
            "line": BUILTIN.splitlines().index("task_type: check_eligibility") + 1,
            "path": "task_type",
            "message": "must be submit_claim, not 'check_eligibility'",
        }
    ]


def test_wrong_media_type_is_415_and_malformed_json_400(client, account):
    response = client.put(
        "/sops/check_eligibility",
        data="<sop/>",
        headers={**account.headers, "Content-Type": "application/xml"},
    )
    _error(response, 415, "unsupported_media_type")
    response = client.put(
        "/sops/check_eligibility",
        data="{not json",
        headers={**account.headers, "Content-Type": "application/json"},
    )
    _error(response, 400, "malformed_json")
    response = client.put("/sops/check_eligibility", json={"yaml": "x"}, headers=account.headers)
    details = _error(response, 422, "validation_failed")["details"]
    assert {d["field"] for d in details} == {"sop", "yaml"}
    response = client.put(
        "/sops/check_eligibility", data=b"title: \xff", headers={**account.headers, **YAML}
    )
    _error(response, 400, "malformed_body")


def test_validate_returns_the_summary_and_writes_nothing(client, account, runtime):
    # given a valid custom SOP / when it is validated
    response = client.post(
        "/sops/validate", data=_custom("Dry run"), headers={**account.headers, **YAML}
    )
    # then 200 with the summary it would give, and no SOP row is written
    assert response.status_code == 200
    body = response.get_json()
    assert body["valid"] is True and body["task_type"] == "check_eligibility"
    assert body["summary"].startswith("Dry run (check_eligibility)")
    assert body["warnings"] == []
    assert _sop_rows(runtime) == 0


def test_validate_reports_every_error_with_lines(client, account):
    text = BUILTIN.replace("- click: {button: Search}", "- teleport: {button: Search}")
    response = client.post("/sops/validate", json={"sop": text}, headers=account.headers)
    error = _error(response, 422, "validation_failed")
    assert all({"line", "path", "message"} <= set(d) for d in error["details"])
    assert any(d["line"] for d in error["details"])
    unknown = _custom().replace("task_type: check_eligibility", "task_type: Check-Horoscope")
    response = client.post("/sops/validate", json={"sop": unknown}, headers=account.headers)
    assert _error(response, 422, "validation_failed")["details"][0]["path"] == "task_type"


def test_sop_on_an_unset_portal_warns_what_is_missing(client, account):
    text = _custom().replace("portal:\n  name: sandbox", "portal:\n  name: acme")
    response = client.post("/sops/validate", json={"sop": text}, headers=account.headers)
    warnings = response.get_json()["warnings"]
    assert any("PUT /portals/acme" in w for w in warnings)
    assert any("PUT /credentials/acme" in w for w in warnings)
    client.put("/portals/acme", json={"base_url": "https://acme.test"}, headers=account.headers)
    client.put(
        "/credentials/acme", json={"username": "u", "password": "p"}, headers=account.headers
    )
    response = _put(client, account, text)
    assert response.status_code == 201 and response.get_json()["warnings"] == []


def test_a_task_created_after_put_runs_the_new_version(client, account):
    # given a second custom version
    _put(client, account, _custom("First"))
    new = _put(client, account, _custom("Second")).get_json()
    # when a task is created
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    ).get_json()
    # then it records that version and its summary, with the task's values, as the instructions
    assert task["sop"]["version"] == 2 and task["sop"]["builtin"] is False
    assert new["summary"].splitlines()[0] == task["instructions"].splitlines()[0]
    assert task["instructions"].startswith("Second (") and "{{ member_id }}" in new["summary"]
    assert "W100000001" in task["instructions"] and "{{ member_id }}" not in task["instructions"]
    assert len(task["instructions"].splitlines()) == len(new["summary"].splitlines())
    assert task["title"] == "Second"


def test_every_stored_version_stays_readable_with_its_text(client, account):
    # given two versions of the account's SOP
    _put(client, account, _custom("First"))
    _put(client, account, _custom("Second"))
    # when the first is read by its number
    response = client.get("/sops/check_eligibility/versions/1", headers=account.headers)
    # then it is that version's document and summary, though the second is active
    assert response.status_code == 200
    first = response.get_json()
    assert first["version"] == 1 and first["builtin"] is False and first["title"] == "First"
    assert first["body"] == _custom("First") and first["summary"].startswith("First (")
    assert first["created_at"].endswith("Z") and "history" not in first
    # and a version that was never stored, or cannot be one, is a 404, never a 500
    for missing in ("3", "0", "2147483648", "999999999999999999", "x"):
        url = f"/sops/check_eligibility/versions/{missing}"
        _error(client.get(url, headers=account.headers), 404, "not_found")
    for task_type in ("check_horoscope", "Not-A-Type", "x" * 65):
        url = f"/sops/{task_type}/versions/1"
        _error(client.get(url, headers=account.headers), 404, "not_found")


def test_a_task_shows_the_exact_sop_it_runs_after_the_type_moves_on(client, account):
    # given a task created on the built-in SOP, and one on the account's first version
    def create() -> dict:
        body = {"type": "check_eligibility", "data": ELIGIBILITY}
        return client.post("/tasks", json=body, headers=account.headers).get_json()

    on_builtin = create()
    _put(client, account, _custom("First"))
    on_first = create()
    # when the account stores a second version
    _put(client, account, _custom("Second"))
    # then each task's link still gives the document it was created with
    builtin = client.get(on_builtin["links"]["sop"], headers=account.headers).get_json()
    assert on_builtin["links"]["sop"] == f"/tasks/{on_builtin['id']}/sop"
    assert builtin["builtin"] is True and builtin["body"] == BUILTIN
    assert builtin["version"] == on_builtin["sop"]["version"]
    first = client.get(on_first["links"]["sop"], headers=account.headers).get_json()
    assert first["builtin"] is False and first["version"] == 1
    assert first["body"] == _custom("First") and first["title"] == on_first["title"] == "First"


def test_another_accounts_versions_and_task_sops_are_404(client, make_account):
    owner, other = make_account("Owner"), make_account("Other")
    _put(client, owner, _custom("Owner only"))
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=owner.headers
    ).get_json()
    for url in ("/sops/check_eligibility/versions/1", f"/tasks/{task['id']}/sop"):
        assert client.get(url, headers=owner.headers).status_code == 200
        _error(client.get(url, headers=other.headers), 404, "not_found")


def test_one_accounts_sop_is_invisible_to_another(client, make_account):
    owner, other = make_account("Owner"), make_account("Other")
    _put(client, owner, _custom("Owner only"))
    seen = client.get("/sops/check_eligibility", headers=other.headers).get_json()
    assert seen["builtin"] is True and seen["history"] == []
    assert seen["title"] == "Check eligibility and benefits"
    # and the other account's own first version is its version 1
    assert _put(client, other, _custom("Other's")).get_json()["version"] == 1
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=other.headers
    ).get_json()
    assert task["title"] == "Other's"


def test_delete_reverts_to_the_builtin_text_as_a_new_version(client, account):
    # given an override
    _put(client, account, _custom())
    # when it is deleted
    response = client.delete("/sops/check_eligibility", headers=account.headers)
    # then the built-in text is active again, as version 2, and the override stays in history
    assert response.status_code == 200
    body = response.get_json()
    assert body["body"] == BUILTIN and body["version"] == 2
    assert [h["version"] for h in body["history"]] == [2, 1]
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    ).get_json()
    assert task["title"] == "Check eligibility and benefits"
    # and deleting again changes nothing
    again = client.delete("/sops/check_eligibility", headers=account.headers).get_json()
    assert again["version"] == 2


def test_delete_without_an_override_stays_builtin(client, account, runtime):
    response = client.delete("/sops/submit_claim", headers=account.headers)
    assert response.status_code == 200
    assert response.get_json()["builtin"] is True and response.get_json()["history"] == []
    with runtime.pool.connection() as conn:
        own = conn.execute("SELECT count(*) AS n FROM sops WHERE account_id IS NOT NULL").fetchone()
    assert own["n"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/sops"),
        ("get", "/sops/check_eligibility"),
        ("get", "/sops/check_eligibility/versions/1"),
        ("get", "/tasks/1/sop"),
        ("put", "/sops/check_eligibility"),
        ("delete", "/sops/check_eligibility"),
        ("post", "/sops/validate"),
    ],
)
def test_sop_endpoints_need_a_key(client, method, path):
    response = getattr(client, method)(path, data=BUILTIN, headers=YAML)
    _error(response, 401, "unauthorized")


def test_an_oversized_sop_is_413(client, account):
    text = _custom() + "\n# padding\n" * 30_000
    _error(_put(client, account, text), 413, "payload_too_large")


def test_an_sop_with_a_control_character_is_422_not_500(client, account):
    # found by schemathesis (tests/api/test_contract_fuzz.py): the YAML reader refused it early
    response = client.post(
        "/sops/validate", data="b\u00d9\x14", headers={**account.headers, **YAML}
    )
    details = _error(response, 422, "validation_failed")["details"]
    assert "characters are not allowed" in details[0]["message"]


def _pinned(url: str, portal: str = "sandbox") -> str:
    return BUILTIN.replace(
        "portal:\n  name: sandbox\n", f"portal:\n  name: {portal}\n  base_url: '{url}'\n", 1
    )


def test_an_sop_cannot_move_its_portal_where_the_login_would_be_typed(client, account, runtime):
    # given the sandbox (the operator's address) and a portal the account registered
    assert client.put("/portals/acme", json={"base_url": "https://portal.acme.test",
                      "allowed_origins": ["https://login.acme.test"]},
                      headers=account.headers).status_code == 200  # fmt: skip
    line = BUILTIN.splitlines().index("  name: sandbox") + 2  # the base_url line after it
    # when an SOP pins either somewhere else, then it is refused, naming the line
    for text, said in (
        (_pinned("https://evil.test"), "the sandbox portal's address is the operator's"),
        (_pinned("https://evil.test/acme", "acme"), "is not on portal 'acme''s origins"),
    ):
        for response in (
            client.post("/sops/validate", json={"sop": text}, headers=account.headers),
            _put(client, account, text),
        ):
            [problem] = _error(response, 422, "validation_failed")["details"]
            assert (problem["line"], problem["path"]) == (line, "portal.base_url")
            assert said in problem["message"]
    assert _sop_rows(runtime) == 0
    # a pin on the registered portal's origins (a path of it, or another declared origin) and
    # a pin of a portal with no registered address are its address
    for url, portal in (
        ("https://portal.acme.test/providers", "acme"),
        ("https://login.acme.test", "acme"),
        ("https://beta.test", "beta"),
    ):
        response = client.post("/sops/validate", json={"sop": _pinned(url, portal)},
                               headers=account.headers)  # fmt: skip
        assert response.status_code == 200, response.get_json()
    with runtime.pool.connection() as conn:
        where = {
            (portal, url): portal_address(conn, account.id, portal, sandbox_url="http://sb.test",
                                          sop_base_url=url)
            for portal, url in (("sandbox", "https://evil.test"), ("acme", "https://evil.test"),
                                ("acme", "https://portal.acme.test/p"), ("beta", "https://b.test"))
        }  # fmt: skip
    # and a stored SOP that pins elsewhere (stored before, or its portal moved since) runs
    # where the portal is
    assert where == {
        ("sandbox", "https://evil.test"): "http://sb.test",
        ("acme", "https://evil.test"): "https://portal.acme.test",
        ("acme", "https://portal.acme.test/p"): "https://portal.acme.test/p",
        ("beta", "https://b.test"): "https://b.test",
    }


def test_an_sop_cannot_pin_an_address_the_agent_may_not_browse(runtime, account):
    # given an operator who does not allow private portal addresses
    from api import create_app

    strict = create_app(runtime=with_settings(runtime, portal_allow_private=False)).test_client()
    line = BUILTIN.splitlines().index("  name: sandbox") + 2
    # when an SOP pins a portal the account never registered on the metadata address or on
    # loopback, then it is refused as PUT /portals refuses that address, naming the line
    for url, said in (("http://169.254.169.254/", "link-local"), ("http://127.0.0.1:8080", "")):
        for response in (
            strict.post("/sops/validate", json={"sop": _pinned(url, "beta")},
                        headers=account.headers),
            _put(strict, account, _pinned(url, "beta")),
        ):  # fmt: skip
            [problem] = _error(response, 422, "validation_failed")["details"]
            assert (problem["line"], problem["path"]) == (line, "portal.base_url")
            assert "base_url is refused" in problem["message"] and said in problem["message"]
    assert _sop_rows(runtime) == 0


def test_an_account_validating_its_most_at_once_is_told_to_wait_and_others_are_not(
    app, client, runtime, make_account
):
    from contextlib import ExitStack

    from flask import g

    from api.rate_limits import parsing

    # given an account with MAX_PARSES_IN_FLIGHT documents being parsed in this process
    busy, other = make_account(), make_account()
    most = runtime.settings.max_parses_in_flight
    with ExitStack() as held:
        with app.test_request_context():
            g.account_id = busy.id
            for _ in range(most):
                held.enter_context(parsing())

        # when it sends one more, then it is told to retry in a second, naming the setting
        refused = client.post("/sops/validate", json={"sop": BUILTIN}, headers=busy.headers)
        error = _error(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"] == "1"
        assert error["details"] == {"limit": "MAX_PARSES_IN_FLIGHT", "max": most,
                                    "retry_after_s": 1}  # fmt: skip
        profile = client.post("/portals/profiles/validate", json={"profile": "x: 1"},
                              headers=busy.headers)  # fmt: skip
        assert profile.status_code == 429, profile.get_json()
        # and another account's documents are parsed meanwhile
        theirs = client.post("/sops/validate", json={"sop": BUILTIN}, headers=other.headers)
        assert theirs.status_code == 200, theirs.get_json()
    # and once those are done, the account's next one is parsed
    again = client.post("/sops/validate", json={"sop": BUILTIN}, headers=busy.headers)
    assert again.status_code == 200, again.get_json()
