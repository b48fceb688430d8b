"""Care Hub, the single-page portal under /hub: its shell, sign-in and JSON API over HTTP."""

from __future__ import annotations

from flask.testing import FlaskClient

from shared import totp

HUB_SECRET = "GEZDGNBVGY3TQOJQ"


def passcode_from_outbox(client: FlaskClient, email: str = "mail@sandbox") -> str:
    assert client.post("/hub/api/passcode", json={"email": email}).status_code == 200
    return client.get("/__sandbox/hub/outbox").get_json()[email]


def sign_in(client: FlaskClient, email: str = "mail@sandbox") -> None:
    code = passcode_from_outbox(client, email)
    response = client.post("/hub/api/session", json={"email": email, "passcode": code})
    assert response.status_code == 200, response.get_json()


def test_every_client_side_route_serves_the_same_shell(client: FlaskClient) -> None:
    # Given a deep link to a screen, when it is loaded directly (a reload, a bookmark)
    pages = [client.get(path) for path in ("/hub/", "/hub/eligibility", "/hub/signin/passcode")]
    # then the server answers the one page whose script draws that screen
    assert {p.status_code for p in pages} == {200}
    assert len({p.data for p in pages}) == 1
    assert b'<script src="/static/hub/app.js">' in pages[0].data
    assert client.get("/static/hub/app.js").status_code == 200
    assert client.get("/hub").status_code == 308  # to /hub/


def test_the_api_needs_a_session(client: FlaskClient) -> None:
    assert client.get("/hub/api/me").status_code == 401
    response = client.post("/hub/api/eligibility", json={})
    assert (response.status_code, response.get_json()) == (401, {"error": "signed_out"})


def test_sign_in_with_the_emailed_passcode_once(client: FlaskClient) -> None:
    code = passcode_from_outbox(client)
    assert code.isdigit() and len(code) == 6
    ok = client.post("/hub/api/session", json={"email": "mail@sandbox", "passcode": code})
    assert ok.status_code == 200
    assert client.get("/hub/api/me").get_json() == {"email": "mail@sandbox"}
    # A passcode works once.
    again = client.post("/hub/api/session", json={"email": "mail@sandbox", "passcode": code})
    assert again.status_code == 401


def test_sign_in_with_the_authenticator_code(client: FlaskClient) -> None:
    code = totp.code(HUB_SECRET)
    response = client.post("/hub/api/session", json={"email": "care@sandbox", "passcode": code})
    assert response.status_code == 200
    assert client.get("/hub/api/me").status_code == 200


def test_wrong_passcode_and_unknown_email_are_refused(client: FlaskClient) -> None:
    unknown = client.post("/hub/api/passcode", json={"email": "nobody@sandbox"})
    assert unknown.status_code == 404
    assert "could not find an account" in unknown.get_json()["error"]
    wrong = client.post("/hub/api/session", json={"email": "care@sandbox", "passcode": "000000"})
    assert wrong.status_code == 401
    assert wrong.get_json()["error"].startswith("That passcode is not valid")
    assert client.get("/hub/api/me").status_code == 401


def test_eligibility_result_is_a_document_for_the_frame(client: FlaskClient) -> None:
    sign_in(client)
    answer = client.post(
        "/hub/api/eligibility",
        json={
            "member_id": "w100000001",
            "last_name": "doe",
            "dob": "01/15/1990",
            "coverage_type": "Medical",
        },
    )
    assert answer.status_code == 200
    frame = client.get(answer.get_json()["frame"]).get_data(as_text=True)
    assert "<caption>Eligibility</caption>" in frame
    assert '<th scope="row">Coverage Status</th><td>Active</td>' in frame
    assert "<td>Sandbox Gold PPO</td>" in frame


def test_eligibility_outcomes_of_the_test_members(client: FlaskClient) -> None:
    sign_in(client)

    def frame_of(member_id: str, last: str, dob: str, coverage: str = "Medical") -> str:
        body = {"member_id": member_id, "last_name": last, "dob": dob, "coverage_type": coverage}
        answer = client.post("/hub/api/eligibility", json=body)
        assert answer.status_code == 200, answer.get_json()
        return client.get(answer.get_json()["frame"]).get_data(as_text=True)

    assert "<td>Inactive</td>" in frame_of("W200000002", "Roe", "06/30/1985")
    assert "<td>Not covered</td>" in frame_of("W100000001", "Doe", "1990-01-15", "Dental")
    assert "No member found matching the criteria." in frame_of("W300000003", "X", "01/01/2000")
    assert "Date of birth does not match" in frame_of("W100000001", "Doe", "02/02/1990")


def test_eligibility_input_mistakes_and_the_error_member(client: FlaskClient) -> None:
    sign_in(client)
    missing = client.post("/hub/api/eligibility", json={"member_id": "W100000001"})
    assert missing.status_code == 400
    assert missing.get_json()["error"].startswith("Enter Member ID, Last name")
    broken = client.post(
        "/hub/api/eligibility",
        json={
            "member_id": "W500000005",
            "last_name": "X",
            "dob": "01/01/2000",
            "coverage_type": "Medical",
        },
    )
    assert broken.status_code == 500


def test_a_result_frame_belongs_to_its_session(client: FlaskClient, app) -> None:
    sign_in(client, "mail@sandbox")
    body = {"member_id": "W100000001", "last_name": "Doe", "dob": "01/15/1990"}
    frame = client.post("/hub/api/eligibility", json={**body, "coverage_type": "Vision"})
    url = frame.get_json()["frame"]
    with app.test_client() as other:
        sign_in(other, "care@sandbox")
        assert other.get(url).status_code == 404


def test_claim_status(client: FlaskClient) -> None:
    sign_in(client)
    found = client.get("/hub/api/claims/clm-deny-0003").get_json()
    assert (found["status"], found["billed"], found["details"]) == (
        "Denied",
        "$310.00",
        "Service not covered",
    )
    missing = client.get("/hub/api/claims/CLM-NONE-0000")
    assert (missing.status_code, missing.get_json()) == (
        404,
        {"error": "No claim found with that number."},
    )


def test_sessions_expire_and_reset_ends_them(client: FlaskClient, clock) -> None:
    sign_in(client)
    clock.advance(901)  # session_ttl_s is 900 by default
    assert client.get("/hub/api/me").status_code == 401
    sign_in(client)
    assert client.post("/__sandbox/hub/expire").get_json() == {"ended": 1}
    assert client.get("/hub/api/me").status_code == 401


def test_down_applies_to_the_hub_too(make_app) -> None:
    with make_app(down=True).test_client() as c:
        assert c.get("/hub/eligibility").status_code == 503
