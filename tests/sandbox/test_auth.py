"""Sign-in, MFA, sign-out, and server-side session expiry."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from .helpers import MFA_USER, NOMFA_USER, FakeClock, choose_payer, read, sign_in, submit

EXPIRED = "Your session has expired. Please sign in again."


def test_login_page_contract(client: FlaskClient) -> None:
    page = read(client.get("/login"))
    assert page.status == 200
    assert page.heading == "Sign in to Sandbox Payer Portal"
    assert set(page.r.labels) == {"Username", "Password"}
    assert page.buttons == ["Sign in"]
    assert page.r.controls[page.id_of("Password")]["type"] == "password"


def test_ids_are_generated_on_every_load(client: FlaskClient) -> None:
    first, second = read(client.get("/login")), read(client.get("/login"))
    assert first.id_of("Username") != second.id_of("Username")
    assert first.name_of("Username") == second.name_of("Username") == "username"


def test_wrong_password_is_rejected_and_counted(client: FlaskClient) -> None:
    page = read(client.get("/login"))
    for password in ("nope", "sandbox-pass-2", "m\u00f6t-de-passe"):
        page = submit(
            client, page, "/login", {"Username": "provider@sandbox", "Password": password}
        )
        assert page.path == "/login"
        assert page.alerts == ["Invalid username or password."]
    submit(client, page, "/login", {"Username": "ghost@sandbox", "Password": "x"})
    stats = client.get("/__sandbox/stats").get_json()
    assert stats["login_attempts"] == {"provider@sandbox": 3, "ghost@sandbox": 1}


def test_user_without_mfa_lands_on_dashboard(client: FlaskClient) -> None:
    page = sign_in(client, NOMFA_USER, payer=None)
    assert page.path == "/dashboard"
    assert page.heading == "Dashboard"
    assert client.get("/__sandbox/stats").get_json()["login_attempts"] == {"nomfa@sandbox": 1}


def test_mfa_user_must_verify_a_totp_code(client: FlaskClient) -> None:
    page = read(client.get("/login"))
    page = submit(client, page, "/login", {"Username": MFA_USER[0], "Password": MFA_USER[1]})
    assert page.path == "/mfa"
    assert page.heading == "Two-step verification"
    assert page.buttons == ["Verify"]
    # Not signed in yet: portal pages send the browser back to MFA.
    assert client.get("/dashboard").location == "/mfa"

    page = submit(client, page, "/mfa", {"One-time code": "000000"})
    assert page.alerts == ["Invalid code."]
    page = submit(client, page, "/mfa", {"One-time code": "abc"})
    assert page.alerts == ["Invalid code."]

    page = sign_in(client, MFA_USER, payer=None)
    assert page.path == "/dashboard"
    stats = client.get("/__sandbox/stats").get_json()
    assert stats["mfa_attempts"] == {"provider@sandbox": 3}


def test_mfa_without_password_step_goes_to_login(client: FlaskClient) -> None:
    assert client.get("/mfa").location == "/login"


def test_pages_need_sign_in_and_come_back_after_it(client: FlaskClient) -> None:
    resp = client.get("/claim-status?member_id=W100000001")
    assert resp.status_code == 302
    assert resp.location == "/login?next=%2Fclaim-status%3Fmember_id%3DW100000001"
    page = sign_in(client, MFA_USER, next_url="/dashboard?tab=1", payer=None)
    assert page.resp.request.full_path == "/dashboard?tab=1"


def test_next_must_be_a_local_path(client: FlaskClient) -> None:
    page = sign_in(client, NOMFA_USER, next_url="//evil.example/x", payer=None)
    assert page.path == "/dashboard"


def test_idle_session_expires_and_resumes_after_sign_in(
    client: FlaskClient, clock: FakeClock
) -> None:
    sign_in(client, MFA_USER)
    clock.advance(899)
    assert client.get("/eligibility").status_code == 200  # activity keeps it alive
    clock.advance(901)
    resp = client.get("/eligibility")
    assert resp.location == "/login?next=%2Feligibility"
    page = read(client.get(resp.location))
    assert page.alerts == [EXPIRED]
    # Signing in again (with MFA) returns to the page, with the payer still chosen.
    page = sign_in(client, MFA_USER, next_url="/eligibility", payer=None)
    assert page.path == "/eligibility"
    assert page.heading == "Eligibility & Benefits"


def test_session_ttl_can_be_changed_at_run_time(client: FlaskClient, clock: FakeClock) -> None:
    sign_in(client)
    client.post("/__sandbox/faults", json={"session_ttl_s": 5})
    clock.advance(6)
    assert client.get("/dashboard").location == "/login?next=%2Fdashboard"


def test_expire_after_requests_expires_mid_flow(client: FlaskClient) -> None:
    sign_in(client)
    client.post("/__sandbox/faults", json={"expire_after_requests": 2})
    assert client.get("/claims/new").status_code == 200
    page = read(client.get("/claims/new"))
    data = page.form(
        {
            "Member ID": "W100000001",
            "Patient First Name": "Jane",
            "Patient Last Name": "Doe",
            "Date of Birth": "01/15/1990",
        }
    )
    resp = client.post("/claims/new/step/1", data=data)  # third request: expired
    assert resp.location == "/login?next=%2Fclaims%2Fnew%2Fstep%2F1"
    page = read(client.get(resp.location))
    assert page.alerts == [EXPIRED]
    # Back after sign-in; the wizard draft is gone, so it starts over at step 1.
    page = sign_in(client, next_url="/claims/new/step/1", payer=None)
    assert page.heading == "New Claim — Step 1 of 5: Patient"


def test_expire_after_requests_from_config(make_app: Callable[..., Flask]) -> None:
    client = make_app(expire_after_requests=0).test_client()
    page = sign_in(client, payer=None)  # the dashboard after sign-in is request #1
    assert page.path == "/login"
    assert page.alerts == [EXPIRED]


def test_single_session_a_sign_in_elsewhere_ends_the_users_other_session(app: Flask) -> None:
    # given a portal that allows one session per user, and a person signed in
    first, elsewhere, colleague = app.test_client(), app.test_client(), app.test_client()
    first.post("/__sandbox/faults", json={"single_session": True})
    sign_in(first)
    sign_in(colleague, MFA_USER)
    # when the same user signs in from another browser
    sign_in(elsewhere)
    # then the first browser's next page is the sign-in page, saying why
    resp = first.get("/eligibility")
    assert resp.location == "/login?next=%2Feligibility"
    assert read(first.get(resp.location)).alerts == [
        "You were signed out because your user name signed in from another browser. Only one"
        " session at a time is allowed."
    ]
    # and the new session, and another user's, go on
    assert read(elsewhere.get("/eligibility")).heading == "Eligibility & Benefits"
    assert read(colleague.get("/dashboard")).path == "/dashboard"


def test_single_session_refuse_turns_a_second_sign_in_away_until_the_first_signs_out(
    app: Flask,
) -> None:
    # given a portal that refuses a user's second session, and a person signed in (with MFA)
    first, elsewhere, colleague = app.test_client(), app.test_client(), app.test_client()
    first.post("/__sandbox/faults", json={"single_session": "refuse"})
    sign_in(first, MFA_USER)
    sign_in(colleague)
    # when the same user signs in from another browser
    page = sign_in(elsewhere, MFA_USER, payer=None)
    # then the sign-in page refuses, saying why, and the first session goes on
    assert page.path == "/login"
    assert page.alerts == [
        "This user name is already signed in from another browser. Sign out there first, or"
        " wait for that session to end."
    ]
    assert read(first.get("/eligibility")).heading == "Eligibility & Benefits"
    assert read(colleague.get("/dashboard")).path == "/dashboard"
    # and once the first browser signs out, the other may sign in
    first.get("/logout")
    assert sign_in(elsewhere, MFA_USER, payer=None).path == "/dashboard"


def test_without_single_session_a_user_may_sign_in_twice(app: Flask) -> None:
    first, elsewhere = app.test_client(), app.test_client()
    sign_in(first)
    sign_in(elsewhere)
    assert read(first.get("/eligibility")).heading == "Eligibility & Benefits"


def test_reset_ends_sessions(client: FlaskClient) -> None:
    sign_in(client)
    client.post("/__sandbox/reset")
    resp = client.get("/dashboard")
    assert resp.location == "/login?next=%2Fdashboard"


def test_sign_out(client: FlaskClient) -> None:
    sign_in(client)
    page = read(client.get("/logout", follow_redirects=True))
    assert page.path == "/login"
    assert page.alerts == []
    assert client.get("/dashboard").location == "/login?next=%2Fdashboard"


def test_new_sign_in_without_expiry_needs_a_payer_again(client: FlaskClient) -> None:
    sign_in(client)
    client.get("/logout")
    sign_in(client, payer=None)
    page = read(client.get("/eligibility", follow_redirects=True))
    assert page.path == "/dashboard"
    assert page.alerts == ["Choose a payer first."]
    choose_payer(client)
    assert client.get("/eligibility").status_code == 200
