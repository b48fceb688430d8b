"""The operator console over HTTP (Flask's test client, real Postgres and Redis): sign-in,
sessions, CSRF, roles, the audit log, and the SOP and portal profile editors' line numbers.

What a browser shows is in tests/e2e/test_console.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from api import create_app
from api.openapi import TASK_EXAMPLES
from shared import portals, users
from shared import tasks as task_queries
from shared.sop.library import builtin_sop_text
from shared.sop.profile import builtin_profile_text
from shared.tasks import TaskStatus
from tests.api.test_review_api import _paused_task

PASSWORD = "correct horse battery"
CLI = str(Path(sys.executable).parent / "understudy")


def make_user(runtime, account_id: int, email: str, role: str) -> None:
    with runtime.pool.connection() as conn:
        token = users.invite_user(
            conn, account_id=account_id, email=email, role=role, ttl_s=3600, limit=100
        )
        users.accept_invite(conn, token, PASSWORD)


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD):
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": form_token(page.text)},
    )


def page_token(client, path: str = "/console/tasks") -> str:
    return form_token(client.get(path).text)


def audit_rows(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT account_id, actor, action, target FROM audit_log ORDER BY id"
        ).fetchall()


def test_an_invite_from_the_cli_lets_a_person_choose_a_password_and_sign_in(
    runtime, settings, client, account
):
    # given the first admin invited from the command line
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "UNDERSTUDY_RUN_DIR": str(settings.run_dir),
    }
    result = subprocess.run(
        [CLI, "users", "invite", "--account", str(account.id), "--email", "Ada@Clinic.test",
         "--role", "admin", "--url", "http://console.test"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith("http://console.test/console/invite/")
    path = link.removeprefix("http://console.test")
    # when they open it and choose a password
    page = client.get(path)
    assert page.status_code == 200 and "ada@clinic.test" in page.text
    short = client.post(path, data={"password": "short", "confirm": "short",
                                    "csrf_token": form_token(page.text)})  # fmt: skip
    assert short.status_code == 422 and "at least 12 characters" in short.text
    done = client.post(path, data={"password": PASSWORD, "confirm": PASSWORD,
                                   "csrf_token": form_token(page.text)})  # fmt: skip
    # then they are signed in, and the link is used up
    assert done.status_code == 303
    assert "ada@clinic.test (admin)" in client.get("/console/tasks").text
    assert client.get(path).status_code == 404
    # and the password works from the sign-in form
    fresh = client.application.test_client()
    assert sign_in(fresh, "ada@clinic.test").status_code == 303
    assert [r["action"] for r in audit_rows(runtime)] == [
        "user.invite", "user.accept_invite", "user.sign_in", "user.sign_in",
    ]  # fmt: skip


def test_the_session_cookie_is_httponly_and_samesite_lax_and_ends_at_sign_out(
    runtime, client, account
):
    make_user(runtime, account.id, "op@clinic.test", "operator")
    response = sign_in(client, "op@clinic.test")
    assert response.status_code == 303
    cookie = next(
        v for k, v in response.headers.items() if k == "Set-Cookie" and "understudy_console=" in v
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http, CONSOLE_SECURE_COOKIE off
    with runtime.pool.connection() as conn:
        stored = conn.execute("SELECT token_digest FROM user_sessions").fetchone()
    token = re.search(r"understudy_console=([^;]+)", cookie).group(1)
    assert stored["token_digest"] != token  # only a digest is kept
    # signing out ends the session on the server, not only in this browser
    out = client.post("/console/logout", data={"csrf_token": page_token(client)})
    assert out.status_code == 303
    client.set_cookie("understudy_console", token, path="/console")
    again = client.get("/console/tasks")
    assert again.status_code == 303 and "/console/login" in again.headers["Location"]


def test_secure_cookie_setting_marks_the_cookie_secure(runtime, account):
    app = create_app(runtime=runtime)
    runtime_settings = runtime.settings
    try:
        runtime.settings = runtime_settings.replace(console_secure_cookie=True)
        make_user(runtime, account.id, "sec@clinic.test", "viewer")
        response = sign_in(app.test_client(), "sec@clinic.test")
    finally:
        runtime.settings = runtime_settings
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_disabled_user_is_signed_out_and_stays_out_until_invited_again(runtime, app, account):
    make_user(runtime, account.id, "admin@c.test", "admin")
    make_user(runtime, account.id, "leaver@c.test", "operator")
    admin, leaver = app.test_client(), app.test_client()
    sign_in(admin, "admin@c.test")
    assert sign_in(leaver, "leaver@c.test").status_code == 303
    with runtime.pool.connection() as conn:
        leaver_id = conn.execute("SELECT id FROM users WHERE email = 'leaver@c.test'")\
            .fetchone()["id"]  # fmt: skip
    # when an admin disables them
    done = admin.post(f"/console/users/{leaver_id}/disable",
                      data={"csrf_token": page_token(admin)})  # fmt: skip
    assert done.status_code == 303
    # then their open session ends and their password no longer signs in
    assert leaver.get("/console/tasks").status_code == 303
    assert sign_in(leaver, "leaver@c.test").status_code == 401
    # an invite again does not let the old password in; accepting it does let them back
    invited = admin.post("/console/users/invite", data={
        "email": "leaver@c.test", "role": "viewer", "csrf_token": page_token(admin)})  # fmt: skip
    link = re.search(r'id="invite-link">[^<]*(/console/invite/[^<]+)<', invited.text).group(1)
    assert sign_in(leaver, "leaver@c.test").status_code == 401
    page = leaver.get(link)
    new_password = "another long password"
    leaver.post(link, data={"password": new_password, "confirm": new_password,
                            "csrf_token": form_token(page.text)})  # fmt: skip
    assert "leaver@c.test (viewer)" in leaver.get("/console/tasks").text
    assert admin.post(f"/console/users/{leaver_id}/disable", data={"csrf_token": "x"})\
        .status_code == 400  # fmt: skip


def test_one_person_is_a_user_of_two_accounts_and_an_invite_tells_nothing_of_the_other(
    runtime, app, make_account, client
):
    clinic, billing = make_account("Clinic"), make_account("Billing service")
    make_user(runtime, clinic.id, "ada@ops.test", "operator")
    make_user(runtime, billing.id, "boss@ops.test", "admin")
    boss = app.test_client()
    sign_in(boss, "boss@ops.test")
    # when the billing service's admin invites a person who is already a user of the clinic
    invited = boss.post("/console/users/invite", data={
        "email": "Ada@ops.test", "role": "admin", "csrf_token": page_token(boss)})  # fmt: skip
    # then it is an ordinary invite, which tells nothing of the other account
    assert invited.status_code == 200, invited.text
    link = re.search(r'id="invite-link">[^<]*(/console/invite/[^<]+)<', invited.text).group(1)
    ada = app.test_client()
    page = ada.get(link)
    ada.post(link, data={"password": PASSWORD, "confirm": PASSWORD,
                         "csrf_token": form_token(page.text)})  # fmt: skip
    assert "ada@ops.test (admin)" in ada.get("/console/tasks").text
    # when she signs in with the password both of her accounts have
    again = app.test_client()
    chooser = sign_in(again, "ada@ops.test")
    # then she chooses the account, and is not signed in to either before
    assert chooser.status_code == 200 and 'id="login-choose"' in chooser.text
    assert re.findall(r'<option value="(\d+)">([^<]+)<', chooser.text) == [
        (str(billing.id), "Billing service"), (str(clinic.id), "Clinic")]  # fmt: skip
    assert again.get("/console/tasks").status_code == 303
    chosen = again.post("/console/login", data={
        "email": "ada@ops.test", "password": PASSWORD, "account": str(clinic.id),
        "csrf_token": form_token(chooser.text)})  # fmt: skip
    assert chosen.status_code == 303
    # and she is the clinic's operator there, who sees none of the billing service's tasks
    created = client.post("/tasks", headers=billing.headers, json={
        "type": "check_eligibility", "data": TASK_EXAMPLES["check_eligibility"]})  # fmt: skip
    assert created.status_code == 200
    tasks_page = again.get("/console/tasks").text
    assert "ada@ops.test (operator)" in tasks_page
    assert re.search(r'id="signed-in-account"[^>]*>Clinic<', tasks_page)
    assert again.get(f"/console/tasks/{created.json['id']}").status_code == 404
    # a wrong password for a chosen account is refused and recorded in that account alone
    stranger = app.test_client()
    wrong = stranger.post("/console/login", data={
        "email": "ada@ops.test", "password": "not the password!", "account": str(billing.id),
        "csrf_token": page_token(stranger, "/console/login")})  # fmt: skip
    assert wrong.status_code == 401
    wrong.close()  # (the entry is written once the answer is sent, as a server closes it)
    failed = [r for r in audit_rows(runtime) if r["action"] == "user.sign_in_failed"]
    assert [r["account_id"] for r in failed] == [billing.id]


def test_the_last_admin_cannot_be_lowered_or_disabled_and_the_account_keeps_an_admin(
    runtime, app, account
):
    make_user(runtime, account.id, "admin@c.test", "admin")
    admin = app.test_client()
    sign_in(admin, "admin@c.test")
    # when the only admin re-invites their own email as a viewer
    lowered = admin.post("/console/users/invite", data={
        "email": "Admin@c.test", "role": "viewer", "csrf_token": page_token(admin)})  # fmt: skip
    # then it is refused, saying why, and they are still the admin
    assert lowered.status_code == 422
    assert "the account&#39;s only admin" in lowered.text
    assert admin.get("/console/users").status_code == 200
    with runtime.pool.connection() as conn:
        me = conn.execute("SELECT id FROM users WHERE email = 'admin@c.test'").fetchone()["id"]
        # nor can they be disabled while they are the only one (two admins at once, taken in
        # turn, leave one of them)
        with pytest.raises(users.UserError, match="only admin"):
            users.disable_user(conn, account.id, me)
    # once another admin has accepted an invite, either may step down
    make_user(runtime, account.id, "second@c.test", "admin")
    stepped_down = admin.post("/console/users/invite", data={
        "email": "admin@c.test", "role": "viewer", "csrf_token": page_token(admin)})  # fmt: skip
    assert stepped_down.status_code == 200
    assert admin.get("/console/users").status_code == 403
    # and an invited admin who has not chosen a password yet does not count as one
    second = app.test_client()
    sign_in(second, "second@c.test")
    pending = second.post("/console/users/invite", data={
        "email": "third@c.test", "role": "admin", "csrf_token": page_token(second)})  # fmt: skip
    assert pending.status_code == 200
    alone = second.post("/console/users/invite", data={
        "email": "second@c.test", "role": "viewer", "csrf_token": page_token(second)})  # fmt: skip
    assert alone.status_code == 422


def test_a_wrong_password_or_unknown_email_is_refused_alike(runtime, client, account):
    make_user(runtime, account.id, "op@clinic.test", "operator")
    wrong = sign_in(client, "op@clinic.test", "not the password!")
    unknown = sign_in(client, "nobody@clinic.test", "not the password!")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "The email or the password is wrong." in response.text
        assert "understudy_console=" not in response.headers.get("Set-Cookie", "")
        response.close()  # as a server does once the answer is sent
    assert client.get("/console/tasks").status_code == 303  # still signed out
    # the failure against a known email is in that account's audit log, written once the answer
    # was sent
    assert [(r["action"], r["target"]) for r in audit_rows(runtime)] == [
        ("user.sign_in_failed", "email:op@clinic.test")
    ]


def test_sign_in_attempts_are_throttled(runtime, account):
    saved = runtime.settings
    runtime.settings = saved.replace(console_login_rate_limit="3/minute")
    try:
        client = create_app(runtime=runtime).test_client()
        make_user(runtime, account.id, "op@clinic.test", "operator")
        codes = [sign_in(client, "op@clinic.test", "wrong password!!").status_code
                 for _ in range(4)]  # fmt: skip
        # the right password does not help once the limit is reached
        last = sign_in(client, "op@clinic.test")
    finally:
        runtime.settings = saved
    assert codes == [401, 401, 401, 429]
    assert last.status_code == 429 and "Too many sign-in attempts" in last.text


def _sign_in_through_a_proxy(client, client_address: str, email: str, password: str, **headers):
    """A sign-in that a load balancer passes on, naming the address it got it from."""
    forwarded = {"X-Forwarded-For": client_address, **headers}
    page = client.get("/console/login", headers=forwarded)
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": form_token(page.text)},
        headers=forwarded,
    )


def test_behind_a_trusted_proxy_each_client_is_throttled_by_its_own_address(runtime, account):
    # given the console behind one load balancer, so every request comes from its address
    saved = runtime.settings
    runtime.settings = saved.replace(console_login_rate_limit="3/minute", trusted_proxies=1)
    try:
        app = create_app(runtime=runtime)
        make_user(runtime, account.id, "op@clinic.test", "operator")
        # when one client guesses passwords for other emails until it is throttled
        guesser = app.test_client()
        codes = [
            _sign_in_through_a_proxy(guesser, "203.0.113.9", f"guess{i}@clinic.test",
                                     "wrong password!!").status_code
            for i in range(4)
        ]  # fmt: skip
        # then another client, at another address, still signs in
        colleague = _sign_in_through_a_proxy(
            app.test_client(), "198.51.100.7", "op@clinic.test", PASSWORD
        )
    finally:
        runtime.settings = saved
    assert codes == [401, 401, 401, 429]
    assert colleague.status_code == 303, colleague.text


def test_without_trusted_proxies_a_forwarded_address_is_not_believed(runtime, account):
    # given the console reached directly (TRUSTED_PROXIES=0, the default)
    saved = runtime.settings
    runtime.settings = saved.replace(console_login_rate_limit="3/minute")
    try:
        client = create_app(runtime=runtime).test_client()
        # when a client names a new made-up address on each guess
        codes = [
            _sign_in_through_a_proxy(client, f"192.0.2.{i}", f"guess{i}@clinic.test",
                                     "wrong password!!").status_code
            for i in range(4)
        ]  # fmt: skip
    finally:
        runtime.settings = saved
    # then it is throttled by the address it really comes from
    assert codes == [401, 401, 401, 429]


def test_behind_a_trusted_https_proxy_the_session_cookie_is_secure(runtime, account):
    # given the console behind a proxy that ends TLS and passes plain http on
    saved = runtime.settings
    runtime.settings = saved.replace(trusted_proxies=1)
    try:
        app = create_app(runtime=runtime)
        make_user(runtime, account.id, "tls@clinic.test", "viewer")
        # when a person signs in over https
        response = _sign_in_through_a_proxy(
            app.test_client(), "198.51.100.8", "tls@clinic.test", PASSWORD,
            **{"X-Forwarded-Proto": "https"},
        )  # fmt: skip
    finally:
        runtime.settings = saved
    # then the session cookie is sent over https only
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_every_post_without_its_csrf_token_is_refused_with_400(runtime, client, account):
    make_user(runtime, account.id, "admin@clinic.test", "admin")
    # the sign-in form itself
    no_token = client.post(
        "/console/login", data={"email": "admin@clinic.test", "password": PASSWORD}
    )
    assert no_token.status_code == 400 and "CSRF" in no_token.text
    # (a token that is not ASCII, in the form or the header, is wrong too, not a 500)
    client.get("/console/login")
    not_ascii = client.post(
        "/console/login",
        data={"email": "admin@clinic.test", "password": PASSWORD, "csrf_token": "jeton-é"},
    )
    assert not_ascii.status_code == 400 and "CSRF" in not_ascii.text
    assert sign_in(client, "admin@clinic.test").status_code == 303
    for path, data in [
        ("/console/users/invite", {"email": "x@clinic.test", "role": "viewer"}),
        ("/console/sops/check_eligibility/edit", {"sop": "task_type: x"}),
        ("/console/webhooks/recover", {"since": "2026-01-01T00:00"}),
        ("/console/logout", {}),
    ]:
        missing = client.post(path, data=data)
        wrong = client.post(path, data={**data, "csrf_token": "not-the-token"})
        not_ascii = client.post(path, data=data, headers={"X-CSRF-Token": "jeton-é"})
        assert missing.status_code == 400, path
        assert wrong.status_code == 400, path
        assert not_ascii.status_code == 400, path
        assert "CSRF token is missing or wrong" in missing.text
    # nothing happened: no invite, no SOP version, still signed in
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 1
        assert conn.execute("SELECT count(*) AS n FROM sops WHERE account_id IS NOT NULL")\
            .fetchone()["n"] == 0  # fmt: skip
    assert client.get("/console/tasks").status_code == 200


def test_roles_a_viewer_reads_an_operator_acts_an_admin_edits(runtime, app, account):
    for email, role in [("v@c.test", "viewer"), ("o@c.test", "operator"), ("a@c.test", "admin")]:
        make_user(runtime, account.id, email, role)
    with runtime.pool.connection() as conn:
        from shared.webhooks import enqueue_ping

        message_id = enqueue_ping(conn, account.id)["id"]
        conn.execute("UPDATE webhook_messages SET status = 'failed' WHERE id = %s", (message_id,))
    sop = builtin_sop_text("check_eligibility").replace("Check eligibility", "Eligibility", 1)
    redeliver = f"/console/webhooks/messages/{message_id}/redeliver"
    results = {}
    for email in ("v@c.test", "o@c.test", "a@c.test"):
        client = app.test_client()
        sign_in(client, email)
        token = page_token(client)
        results[email] = (
            client.get("/console/webhooks").status_code,
            client.post(redeliver, data={"csrf_token": token}).status_code,
            client.post(
                "/console/sops/check_eligibility/edit", data={"sop": sop, "csrf_token": token}
            ).status_code,  # fmt: skip
            client.get("/console/users").status_code,
        )
    assert results == {
        "v@c.test": (200, 403, 403, 403),
        "o@c.test": (200, 303, 403, 403),
        "a@c.test": (200, 303, 303, 200),
    }
    # a viewer's page has no buttons to act with
    viewer = app.test_client()
    sign_in(viewer, "v@c.test")
    assert "redeliver-form" not in viewer.get(f"/console/webhooks/messages/{message_id}").text


def test_another_accounts_task_is_not_found(runtime, app, make_account, client):
    mine, theirs = make_account("Mine"), make_account("Theirs")
    make_user(runtime, mine.id, "me@mine.test", "admin")
    created = client.post(
        "/tasks", headers=theirs.headers,
        json={"type": "check_eligibility",
              "data": "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"},
    )  # fmt: skip
    assert created.status_code == 200
    browser = app.test_client()
    sign_in(browser, "me@mine.test")
    assert browser.get(f"/console/tasks/{created.json['id']}").status_code == 404
    assert "data-task-id" not in browser.get("/console/tasks").text


def test_the_task_list_filters_by_status_type_and_date(runtime, app, client, account):
    make_user(runtime, account.id, "v@c.test", "viewer")
    data = "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"
    ids = [
        client.post("/tasks", headers=account.headers,
                    json={"type": "check_eligibility", "data": data}).json["id"]
        for _ in range(2)
    ]  # fmt: skip
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE tasks SET status = 'failed', created_at = '2026-01-05T10:00Z'"
                     " WHERE id = %s", (ids[0],))  # fmt: skip
    browser = app.test_client()
    sign_in(browser, "v@c.test")

    def listed(query: str) -> list[int]:
        page = browser.get(f"/console/tasks?{query}")
        assert page.status_code == 200, page.text
        return [int(i) for i in re.findall(r'data-task-id="(\d+)"', page.text)]

    assert listed("") == [ids[1], ids[0]]
    assert listed("status=failed") == [ids[0]]
    assert listed("type=check_eligibility&since=2026-01-05&until=2026-01-05") == [ids[0]]
    assert listed("until=2026-01-04") == []
    assert listed("until=9999-12-31") == [ids[1], ids[0]]  # the last date there is: no 500
    assert browser.get("/console/tasks?status=bogus").status_code == 400
    assert browser.get("/console/tasks?since=yesterday").status_code == 400


def test_an_invalid_sop_is_shown_with_its_line_numbers_and_not_stored(runtime, app, account):
    make_user(runtime, account.id, "a@c.test", "admin")
    browser = app.test_client()
    sign_in(browser, "a@c.test")
    text = builtin_sop_text("check_eligibility")
    lines = text.splitlines()
    # break one step: an unknown step kind on a known line
    index = next(i for i, line in enumerate(lines) if "- click:" in line)
    lines[index] = lines[index].replace("- click:", "- teleport:", 1)
    response = browser.post(
        "/console/sops/check_eligibility/edit",
        data={"sop": "\n".join(lines), "csrf_token": page_token(browser)},
    )
    assert response.status_code == 422
    assert f"line {index + 1}</a>" in response.text
    assert "teleport" in response.text  # the text is kept in the editor
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sops WHERE account_id IS NOT NULL")\
            .fetchone()["n"] == 0  # fmt: skip
    # a valid change is stored as a new version, and the diff shows it
    changed = text.replace("Check eligibility", "Check eligibility today", 1)
    assert changed != text
    saved = browser.post(
        "/console/sops/check_eligibility/edit",
        data={"sop": changed, "csrf_token": page_token(browser)},
    )
    assert saved.status_code == 303
    assert "sop-warnings" not in browser.get(saved.headers["Location"]).text
    diff = browser.get("/console/sops/check_eligibility/diff?from=builtin&to=1")
    assert diff.status_code == 200
    assert '<span class="d-add">+' in diff.text and "Check eligibility today" in diff.text
    assert ("sop.save", "sop:check_eligibility") in {
        (r["action"], r["target"]) for r in audit_rows(runtime)
    }
    # a valid version that reads a name nothing gives is stored, and its page says so
    slipped = changed.replace("{{ dob | us_date }}", "{{ dbo | us_date }}")
    saved = browser.post(
        "/console/sops/check_eligibility/edit",
        data={"sop": slipped, "csrf_token": page_token(browser)},
    )
    assert saved.status_code == 303
    page = browser.get(saved.headers["Location"]).text
    assert 'id="sop-warnings"' in page and "&#39;dbo&#39; is no input" in page


@pytest.mark.parametrize(
    ("editor", "api", "field", "text", "table"),
    [
        ("/console/sops/check_eligibility/edit", "/sops/check_eligibility", "sop",
         builtin_sop_text("check_eligibility"), "sops"),
        ("/console/portals/sandbox/profile/edit", "/portals/sandbox/profile", "profile",
         builtin_profile_text("sandbox"), "portal_profiles"),
    ],
    ids=["sop", "profile"],
)  # fmt: skip
def test_a_save_over_a_version_the_editor_never_saw_is_refused_and_kept(
    runtime, app, client, account, editor, api, field, text, table
):
    # given an admin who opened the editor on the built-in version
    make_user(runtime, account.id, "ed@c.test", "admin")
    browser = app.test_client()
    sign_in(browser, "ed@c.test")
    page = browser.get(editor).text
    opened_at = re.search(r'name="opened_at" value="([^"]*)"', page).group(1)
    assert opened_at == "builtin"
    # and another admin (here through the API) who saved a version meanwhile
    theirs = text + "# theirs\n"
    assert client.put(api, json={field: theirs}, headers=account.headers).status_code == 201

    # when the first saves their own text
    mine = text + "# mine\n"
    form = {field: mine, "csrf_token": form_token(page), "opened_at": opened_at}
    refused = browser.post(editor, data=form)

    # then it is refused, saying what is active now, with their text kept; nothing is stored
    assert refused.status_code == 409
    assert "changed since you opened it: version 1 is active now" in refused.text
    assert "# mine" in refused.text
    count = f"SELECT count(*) AS n FROM {table} WHERE account_id = %s"
    with runtime.pool.connection() as conn:
        assert conn.execute(count, (account.id,)).fetchone()["n"] == 1
    # and saved again from that page, having seen it, it is stored
    again = re.search(r'name="opened_at" value="([^"]*)"', refused.text).group(1)
    form = {field: mine, "csrf_token": form_token(refused.text), "opened_at": again}
    assert browser.post(editor, data=form).status_code == 303
    with runtime.pool.connection() as conn:
        assert conn.execute(count, (account.id,)).fetchone()["n"] == 2


def test_each_sop_version_and_the_sop_a_task_ran_with_have_pages(
    runtime, app, client, account, make_account
):
    make_user(runtime, account.id, "v@c.test", "viewer")
    text = builtin_sop_text("check_eligibility")
    first = text.replace("Check eligibility", "Check eligibility (first)", 1)
    second = text.replace("Check eligibility", "Check eligibility (second)", 1)
    yaml = {**account.headers, "Content-Type": "application/yaml"}
    data = "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"
    # given a task created under version 1 of the account's SOP, and a version 2 stored since
    assert client.put("/sops/check_eligibility", data=first, headers=yaml).status_code == 201
    task_id = client.post(
        "/tasks", headers=account.headers, json={"type": "check_eligibility", "data": data}
    ).json["id"]
    assert client.put("/sops/check_eligibility", data=second, headers=yaml).status_code == 201
    browser = app.test_client()
    sign_in(browser, "v@c.test")
    # when a viewer follows the task's SOP from its page
    task_page = browser.get(f"/console/tasks/{task_id}").text
    assert f'href="/console/tasks/{task_id}/sop"' in task_page
    ran = browser.get(f"/console/tasks/{task_id}/sop")
    # then it reads the version the task ran with, not the newer one, and can diff the two
    assert ran.status_code == 200
    assert "Check eligibility (first)" in ran.text and "(second)" not in ran.text
    assert "/console/sops/check_eligibility/diff?from=1&amp;to=2" in ran.text
    # and each version of the history has a page of its own, the built-in SOP too
    history = browser.get("/console/sops/check_eligibility").text
    assert 'href="/console/sops/check_eligibility/versions/1"' in history
    versions = {v: browser.get(f"/console/sops/check_eligibility/versions/{v}")
                for v in ("1", "2", "builtin", "3", "x")}  # fmt: skip
    assert "(first)" in versions["1"].text and "(second)" in versions["2"].text
    assert "compare-active" not in versions["2"].text  # the active version itself
    assert versions["builtin"].status_code == 200 and "(first)" not in versions["builtin"].text
    assert [versions[v].status_code for v in ("3", "x")] == [404, 400]
    # and a task of a type of the account's own still shows its SOP once the type is removed
    from tests.api.test_custom_types import CHECK_MEMBER_PLAN, DATA

    client.put("/sops/check_member_plan", json={"sop": CHECK_MEMBER_PLAN}, headers=account.headers)
    custom_task = client.post(
        "/tasks", headers=account.headers, json={"type": "check_member_plan", "data": DATA}
    ).json["id"]
    assert client.delete("/sops/check_member_plan", headers=account.headers).status_code == 200
    kept = browser.get(f"/console/tasks/{custom_task}/sop")
    assert kept.status_code == 200 and "Read a member" in kept.text
    assert "compare-active" not in kept.text
    # and another account's task shows nothing of its SOP
    theirs = make_account("Theirs")
    their_task = client.post(
        "/tasks", headers=theirs.headers, json={"type": "check_eligibility", "data": data}
    ).json["id"]
    assert browser.get(f"/console/tasks/{their_task}/sop").status_code == 404


def test_the_audit_log_records_api_calls_and_console_actions_and_pages(
    runtime, app, client, make_account
):
    account, other = make_account("Mine"), make_account("Other")
    make_user(runtime, account.id, "op@c.test", "operator")
    prefix = account.api_key[:15]
    # a mutating API call and a read
    assert client.post("/webhook-endpoint/test", headers=account.headers).status_code == 409
    put = client.put("/webhook-endpoint", headers=account.headers,
                     json={"url": "http://127.0.0.1:9/hook"})  # fmt: skip
    assert put.status_code == 200
    assert client.get("/tasks", headers=account.headers).status_code == 200
    ping = client.post("/webhook-endpoint/test", headers=account.headers)
    assert ping.status_code == 202
    assert client.post("/webhook-endpoint/test", headers=other.headers).status_code == 409
    with runtime.pool.connection() as conn:  # its delivery failed for good
        conn.execute("UPDATE webhook_messages SET status = 'failed' WHERE id = %s",
                     (ping.json["id"],))  # fmt: skip
    # a console action
    browser = app.test_client()
    sign_in(browser, "op@c.test")
    browser.post(f"/console/webhooks/messages/{ping.json['id']}/redeliver",
                 data={"csrf_token": page_token(browser)})  # fmt: skip

    first = client.get("/audit-log?limit=2", headers=account.headers)
    assert first.status_code == 200
    body = first.json
    assert [(e["actor"], e["action"], e["target"]) for e in body["data"]] == [
        ("op@c.test", "webhook.redeliver", f"webhook_message:{ping.json['id']}"),
        ("op@c.test", "user.sign_in", body["data"][1]["target"]),
    ]
    assert body["has_more"] is True
    rest = client.get(f"/audit-log?cursor={body['next_cursor']}", headers=account.headers).json
    assert [(e["actor"], e["action"], e["target"]) for e in rest["data"]] == [
        (f"api_key:{prefix}", "POST /webhook-endpoint/test", "/webhook-endpoint/test"),
        (f"api_key:{prefix}", "PUT /webhook-endpoint", "/webhook-endpoint"),
    ]  # the failed call (409) and the read are not recorded
    assert rest["has_more"] is False and rest["data"][0]["created_at"].endswith("Z")
    # the console shows the same log, a creation's entry linking to its task
    created = client.post("/tasks", headers=account.headers, json={
        "type": "check_eligibility",
        "data": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"})  # fmt: skip
    assert created.status_code == 200, created.json
    page = browser.get("/console/audit").text
    assert "webhook.redeliver" in page and f"api_key:{prefix}" in page
    task_id = created.json["id"]
    assert f'<a href="/console/tasks/{task_id}">task {task_id}</a>' in page
    # another account sees none of it (its own failed call is not recorded either)
    assert client.get("/audit-log", headers=other.headers).json["data"] == []
    assert client.get("/audit-log").status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "https://elsewhere.test/x", "//elsewhere.test/x", "/tasks", "http://[::1",
        "/console/tasks\r\nSet-Cookie: x=1",
    ],
)  # fmt: skip
def test_after_sign_in_only_console_pages_are_followed(runtime, app, account, target):
    make_user(runtime, account.id, "v@c.test", "viewer")
    browser = app.test_client()
    page = browser.get("/console/login")
    response = browser.post(
        "/console/login", query_string={"next": target},
        data={"email": "v@c.test", "password": PASSWORD, "csrf_token": form_token(page.text)},
    )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/console/tasks")


def test_a_nul_in_a_console_form_is_refused_with_400_and_nothing_is_stored(
    runtime, app, client, account
):
    # given an admin, and a task paused for review
    make_user(runtime, account.id, "a@c.test", "admin")
    task_id = _paused_task(runtime, client, account)
    anonymous = app.test_client()
    login_form = form_token(anonymous.get("/console/login").text)
    # when anyone signs in with a NUL in the email (a form PostgreSQL cannot store)
    answer = anonymous.post(
        "/console/login",
        data={"email": "a\x00@c.test", "password": PASSWORD, "csrf_token": login_form},
    )
    # then it is a 400 saying why, not a 500
    assert answer.status_code == 400 and "NUL" in answer.text
    # and so is each signed-in form that writes what it was sent
    browser = app.test_client()
    assert sign_in(browser, "a@c.test").status_code == 303
    token = page_token(browser)
    for path, data in [
        (f"/console/tasks/{task_id}/review", {"decision": "reject", "note": "Wrong\x00payer"}),
        ("/console/users/invite", {"email": "x\x00@c.test", "role": "viewer"}),
        ("/console/portals/edit", {"name": "payer", "base_url": "https://payer.test/\x00"}),
    ]:
        answer = browser.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 400 and "NUL" in answer.text, path
    # and nothing was decided, invited or registered
    task = client.get(f"/tasks/{task_id}", headers=account.headers).json
    assert task["status"] == "pending_review"
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 1
        assert conn.execute("SELECT count(*) AS n FROM portals").fetchone()["n"] == 0


def test_an_operator_cancels_a_queued_task_once(runtime, app, client, account):
    make_user(runtime, account.id, "o@c.test", "operator")
    make_user(runtime, account.id, "v@c.test", "viewer")
    task_id = client.post(
        "/tasks", headers=account.headers,
        json={"type": "check_eligibility",
              "data": "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"},
    ).json["id"]  # fmt: skip
    viewer, operator = app.test_client(), app.test_client()
    sign_in(viewer, "v@c.test")
    sign_in(operator, "o@c.test")
    assert "cancel-form" not in viewer.get(f"/console/tasks/{task_id}").text
    path = f"/console/tasks/{task_id}/cancel"
    assert viewer.post(path, data={"csrf_token": page_token(viewer)}).status_code == 403
    done = operator.post(path, data={"csrf_token": page_token(operator)})
    assert done.status_code == 303
    assert client.get(f"/tasks/{task_id}", headers=account.headers).json["status"] == "canceled"
    again = operator.post(path, data={"csrf_token": page_token(operator)})
    assert again.status_code == 409 and "already ended as canceled" in again.text
    assert ("task.cancel", f"task:{task_id}") in {
        (r["action"], r["target"]) for r in audit_rows(runtime)
    }


def test_an_operator_sends_a_failed_task_again_once_and_the_pages_link_both(
    runtime, app, client, account
):
    # given a check that failed, and a claim whose run reached its submit step
    make_user(runtime, account.id, "o@c.test", "operator")
    make_user(runtime, account.id, "v@c.test", "viewer")
    failed, submitted = (
        client.post("/tasks", headers=account.headers,
                    json={"type": task_type, "data": TASK_EXAMPLES[task_type]}).json["id"]
        for task_type in ("check_eligibility", "submit_claim")
    )  # fmt: skip
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET irreversible_step = 'Submit claim', irreversible_at = now()"
            " WHERE id = %s",
            (submitted,),
        )
        for task_id in (failed, submitted):
            task_queries.finish_task(conn, task_id, TaskStatus.FAILED, "Portal error: timed out")
    viewer, operator = app.test_client(), app.test_client()
    sign_in(viewer, "v@c.test")
    sign_in(operator, "o@c.test")
    # then the operator is offered "Send again" for the check only, and a viewer for neither
    assert "retry-form" in operator.get(f"/console/tasks/{failed}").text
    page = operator.get(f"/console/tasks/{submitted}").text
    assert "retry-form" not in page and "ran its submit step" in page
    assert "retry-form" not in viewer.get(f"/console/tasks/{failed}").text
    path = f"/console/tasks/{failed}/retry"
    assert viewer.post(path, data={"csrf_token": page_token(viewer)}).status_code == 403

    # when the operator sends it again, twice from the same page
    form = {"csrf_token": page_token(operator), "retries": "0"}
    sent = [operator.post(path, data=form) for _ in range(2)]

    # then both land on the one new task, whose page says so and links back
    assert {r.status_code for r in sent} == {303}
    assert sent[0].headers["Location"] == sent[1].headers["Location"]
    new_page = operator.get(sent[0].headers["Location"])
    assert "Sent again as this new task" in new_page.text
    new_id = int(re.search(r"/console/tasks/(\d+)", sent[0].headers["Location"]).group(1))
    assert f'id="task-retry-of">Task {failed}<' in new_page.text
    old_page = operator.get(f"/console/tasks/{failed}").text
    assert f"/console/tasks/{new_id}" in old_page
    # and once that one failed too, the old page (which now counts one) sends it once more
    assert 'name="retries" value="1"' in old_page
    with runtime.pool.connection() as conn:
        task_queries.finish_task(conn, new_id, TaskStatus.FAILED, "Portal error: timed out")
    third = operator.post(path, data={"csrf_token": form_token(old_page), "retries": "1"})
    assert third.status_code == 303 and third.headers["Location"] != sent[0].headers["Location"]
    listed = client.get("/tasks", headers=account.headers).json["data"]
    assert len(listed) == 4  # the two, and the two sent again
    # and the submitted claim is refused with the reason, and the action is audited
    refused = operator.post(f"/console/tasks/{submitted}/retry",
                            data={"csrf_token": page_token(operator)})  # fmt: skip
    assert refused.status_code == 409 and "payer may have it" in refused.text
    # each sending is audited, the second of the same page's saying it only replayed the first
    retries = [(r["target"], r["detail"]) for r in audit_details(runtime, "task.retry")]
    assert [target for target, _detail in retries] == [f"task:{failed}"] * 3
    assert [bool((detail or {}).get("replayed")) for _target, detail in retries] == [
        False, True, False
    ]  # fmt: skip
    assert retries[1][1]["task_id"] == new_id


def audit_details(runtime, action: str) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT target, detail FROM audit_log WHERE action = %s ORDER BY id", (action,)
        ).fetchall()


def test_a_portal_profile_is_edited_with_line_numbers_then_saved_diffed_and_audited(
    runtime, app, account
):
    make_user(runtime, account.id, "a@c.test", "admin")
    make_user(runtime, account.id, "o@c.test", "operator")
    browser = app.test_client()
    sign_in(browser, "a@c.test")
    # the sandbox starts on its built-in profile, with no history of the account's own
    page = browser.get("/console/portals/sandbox/profile")
    assert page.status_code == 200 and "the built-in profile" in page.text
    assert 'id="profile-history"' not in page.text
    text = builtin_profile_text("sandbox")
    editor = browser.get("/console/portals/sandbox/profile/edit")
    assert editor.status_code == 200 and "Sandbox Payer Portal" in editor.text
    # an unknown key on a known line is refused with that line, and nothing is stored
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    lines.insert(index + 1, "colour: blue")
    response = browser.post(
        "/console/portals/sandbox/profile/edit",
        data={"profile": "\n".join(lines), "csrf_token": page_token(browser)},
    )
    assert response.status_code == 422
    assert f"line {index + 2}</a>" in response.text and "colour: blue" in response.text
    with runtime.pool.connection() as conn:
        assert not portals.has_profile_versions(conn, account.id, "sandbox")
    # without the CSRF token, or as an operator, nothing is stored either
    changed = text.replace("title: Sandbox Payer Portal", "title: Sandbox Payer Portal (ours)", 1)
    assert changed != text
    assert (
        browser.post("/console/portals/sandbox/profile/edit", data={"profile": changed}).status_code
        == 400
    )
    operator = app.test_client()
    sign_in(operator, "o@c.test")
    assert operator.get("/console/portals/sandbox/profile/edit").status_code == 403
    assert (
        operator.post(
            "/console/portals/sandbox/profile/edit",
            data={"profile": changed, "csrf_token": page_token(operator)},
        ).status_code
        == 403
    )
    # a valid change is version 1, listed in the history, and the diff shows it
    saved = browser.post(
        "/console/portals/sandbox/profile/edit",
        data={"profile": changed, "csrf_token": page_token(browser)},
    )
    assert saved.status_code == 303
    page = browser.get(saved.headers["Location"])
    assert "Saved as a new version" in page.text and "version 1" in page.text
    assert 'id="profile-history"' in page.text
    api = app.test_client().get("/portals/sandbox/profile", headers=account.headers).json
    assert api["version"] == 1 and api["title"] == "Sandbox Payer Portal (ours)"
    diff = browser.get("/console/portals/sandbox/profile/diff?from=builtin&to=1")
    assert diff.status_code == 200
    assert '<span class="d-add">+title: Sandbox Payer Portal (ours)' in diff.text
    assert '<span class="d-del">-title: Sandbox Payer Portal' in diff.text
    assert browser.get("/console/portals/sandbox/profile/diff?from=builtin&to=7").status_code == 404
    assert browser.get("/console/portals/nowhere/profile").status_code == 404
    audited = [(r["action"], r["target"]) for r in audit_rows(runtime)]
    assert audited.count(("portal.profile.save", "portal:sandbox")) == 1


def test_an_admin_sets_retention_and_review_from_the_settings_page(runtime, app, client, account):
    make_user(runtime, account.id, "a@c.test", "admin")
    make_user(runtime, account.id, "v@c.test", "viewer")
    admin, viewer = app.test_client(), app.test_client()
    sign_in(admin, "a@c.test")
    sign_in(viewer, "v@c.test")
    # given the page: the default retention, and only the types with a point to pause offered
    page = admin.get("/console/settings").text
    assert 'name="retention_days" min="1" max="3650" required\n           value="90"' in page
    assert 'name="review_timeout_hours" min="1" max="2160"\n           required value="168"' in page
    assert 'value="submit_claim"' in page and 'value="check_eligibility"' not in page

    # when the admin keeps tasks 30 days, requires review for claims and gives it 48 hours
    form = {"csrf_token": form_token(page), "retention_days": "30",
            "review_required_types": ["submit_claim"], "review_timeout_hours": "48"}  # fmt: skip
    saved = admin.post("/console/settings", data=form)

    # then the API sees all three, and the change is audited
    assert saved.status_code == 303
    assert "Settings saved." in admin.get(saved.headers["Location"]).text
    assert client.get("/settings", headers=account.headers).json == {
        "retention_days": 30, "review_required_types": ["submit_claim"],
        "review_timeout_hours": 48,
    }  # fmt: skip
    assert ("settings.save", "settings") in {
        (r["action"], r["target"]) for r in audit_rows(runtime)
    }
    # and a retention out of range is refused, saying why, with nothing saved
    refused = admin.post("/console/settings", data={**form, "retention_days": "0"})
    assert refused.status_code == 422
    assert "retention_days: must be a number of days from 1 to 3650" in refused.text
    assert client.get("/settings", headers=account.headers).json["retention_days"] == 30
    # and so is a number of digits int() cannot read ("²"), not a 500
    superscript = admin.post("/console/settings", data={**form, "retention_days": "\u00b2"})
    assert superscript.status_code == 422
    assert "retention_days: Not a valid integer." in superscript.text
    # and a viewer reads the page but cannot save it
    assert "disabled" in viewer.get("/console/settings").text
    denied = viewer.post("/console/settings", data={**form, "csrf_token": page_token(viewer)})
    assert denied.status_code == 403


def test_a_paused_tasks_page_says_by_when_to_decide(runtime, app, client, account):
    # given a claim paused for review, on an account that gives a review 48 hours
    client.put("/settings", json={"review_timeout_hours": 48}, headers=account.headers)
    task_id = _paused_task(runtime, client, account)
    make_user(runtime, account.id, "o@c.test", "operator")
    browser = app.test_client()
    sign_in(browser, "o@c.test")

    # when an operator opens its page
    page = browser.get(f"/console/tasks/{task_id}").text

    # then the review form says until when it waits, and what happens after
    deadline = client.get(f"/tasks/{task_id}", headers=account.headers).json["review"]
    shown = re.search(r'id="review-deadline">Decide by\s+(.+?):', page)
    assert shown is not None, page
    assert shown.group(1).startswith(deadline["expires_at"][:10])
    assert 'id="review-form"' in page


def test_a_form_sent_after_its_session_ended_does_nothing_and_its_page_opens_after_sign_in(
    runtime, app, client, account
):
    # given an operator on a queued task's page, whose session then ends (signed out elsewhere)
    make_user(runtime, account.id, "o@c.test", "operator")
    task_id = client.post(
        "/tasks", json={"type": "check_eligibility", "data": TASK_EXAMPLES["check_eligibility"]},
        headers=account.headers,
    ).get_json()["id"]  # fmt: skip
    browser = app.test_client()
    cookie = sign_in(browser, "o@c.test").headers["Set-Cookie"]
    token = page_token(browser, f"/console/tasks/{task_id}")
    browser.post("/console/logout", data={"csrf_token": token})
    browser.set_cookie("understudy_console", re.search(r"understudy_console=([^;]+)", cookie)[1],
                       path="/console")  # fmt: skip
    # when the page's Cancel button is pressed
    page = f"http://localhost/console/tasks/{task_id}"
    sent = browser.post(f"/console/tasks/{task_id}/cancel", data={"csrf_token": token},
                        headers={"Referer": page})  # fmt: skip
    # then nothing is done, and sign-in says so and leads back to the task's page, not to the
    # form's own address (which answers no GET)
    assert sent.status_code == 303
    login = browser.get(sent.headers["Location"])
    assert 'id="login-ended"' in login.text
    signed_in = browser.post(
        sent.headers["Location"],
        data={"email": "o@c.test", "password": PASSWORD, "csrf_token": form_token(login.text)},
    )
    assert signed_in.headers["Location"].endswith(f"/console/tasks/{task_id}")
    assert client.get(f"/tasks/{task_id}", headers=account.headers).get_json()["status"] != (
        "canceled"
    )
    # a form sent from no console page of this host leads to the tasks
    browser.post("/console/logout", data={"csrf_token": page_token(browser)})
    elsewhere = browser.post(f"/console/tasks/{task_id}/cancel",
                             headers={"Referer": "https://elsewhere.test/console/x"})  # fmt: skip
    assert elsewhere.headers["Location"].endswith("/console/login?next=/console/tasks&ended=1")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/console/nonexistent", 404), ("/console/tasks/abc", 404),
     ("/console/tasks/99999999999999999999", 404), ("/console/users/invite", 405)],
)  # fmt: skip
def test_a_console_address_that_is_no_page_is_the_consoles_error_page(
    runtime, app, account, path, status
):
    make_user(runtime, account.id, "v@c.test", "viewer")
    browser = app.test_client()
    sign_in(browser, "v@c.test")
    response = browser.get(path)
    assert response.status_code == status and response.mimetype == "text/html"
    assert 'id="error-message"' in response.text
    assert "default-src" in response.headers["Content-Security-Policy"]
    # the API's addresses still answer their JSON
    assert browser.get("/tasks/abc").mimetype == "application/json"


def test_a_review_note_is_counted_as_typed_and_kept_when_refused(runtime, app, client, account):
    # given an operator on a task paused for review
    make_user(runtime, account.id, "o@c.test", "operator")
    task_id = _paused_task(runtime, client, account)
    browser = app.test_client()
    sign_in(browser, "o@c.test")
    token = page_token(browser, f"/console/tasks/{task_id}")
    review = f"/console/tasks/{task_id}/review"
    # a note of 2,000 characters with line breaks, which the browser sends as CRLF
    note = "\r\n".join(["x" * 99] * 20)[:2019]
    assert len(note.replace("\r\n", "\n")) == 2000 - 1
    # when it is refused for another reason (no decision), the page keeps the note
    refused = browser.post(review, data={"note": note, "csrf_token": token})
    assert refused.status_code == 422 and ("x" * 99 + "\n" + "x" * 99) in refused.text
    # and with a decision it is taken, not refused as over 2,000 characters
    decided = browser.post(review, data={"note": note, "decision": "reject", "csrf_token": token})
    assert decided.status_code == 303
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert task["status"] == "completed_with_issues" and "x" * 99 + "\n" in task["notes"]


def test_a_new_task_type_cannot_take_the_name_of_one_the_account_has(runtime, app, account):
    make_user(runtime, account.id, "a@c.test", "admin")
    browser = app.test_client()
    sign_in(browser, "a@c.test")
    for name in ("submit_claim", "my_type"):
        if name == "my_type":  # a custom type, stored from the new type's page
            fresh = browser.get("/console/sops/new", query_string={"name": name})
            assert "<h1>New task type my_type" in fresh.text
            text = builtin_sop_text("check_eligibility").replace(
                "task_type: check_eligibility", "task_type: my_type", 1
            )
            saved = browser.post(f"/console/sops/{name}/edit",
                                 data={"sop": text, "csrf_token": page_token(browser)})  # fmt: skip
            assert saved.status_code == 303
        # when "New task type" is asked for with a name the account already has
        page = browser.get("/console/sops/new", query_string={"name": name})
        # then it is refused, pointing to the type's editor, which is headed Edit
        assert page.status_code == 409 and 'id="edit-existing"' in page.text
        assert f"<h1>Edit {name}" in browser.get(f"/console/sops/{name}/edit").text


def test_an_invite_form_sent_again_shows_the_same_link_and_keeps_it_valid(runtime, app, account):
    # given an admin who invites someone from the users page
    make_user(runtime, account.id, "a@c.test", "admin")
    admin = app.test_client()
    sign_in(admin, "a@c.test")
    page = admin.get("/console/users").text
    form = {"email": "new@c.test", "role": "viewer", "csrf_token": form_token(page),
            "submission": re.search(r'name="submission" value="([^"]+)"', page)[1]}  # fmt: skip
    first = admin.post("/console/users/invite", data=form)
    link = re.search(r'id="invite-link">([^<]+)<', first.text)[1]
    # when the page is reloaded, which sends the same form again
    again = admin.post("/console/users/invite", data=form)
    # then it shows the same link, which still opens, and one invite was made
    assert re.search(r'id="invite-link">([^<]+)<', again.text)[1] == link
    assert app.test_client().get(link.replace("http://localhost", "")).status_code == 200
    invites = audit_details(runtime, "user.invite")
    assert [d["detail"] for d in invites] == [
        {"role": "viewer"},
        {"role": "viewer", "replayed": True},
    ]
    # the same form sent with another person is refused, the first invite standing
    other = admin.post("/console/users/invite", data={**form, "email": "other@c.test"})
    assert other.status_code == 409 and "already sent" in other.text
    assert app.test_client().get(link.replace("http://localhost", "")).status_code == 200
    # a form whose email is no email is refused on the page, as before
    fresh_form = re.search(r'name="submission" value="([^"]+)"', admin.get("/console/users").text)
    refused = admin.post(
        "/console/users/invite", data={**form, "email": "no-email", "submission": fresh_form[1]}
    )
    assert refused.status_code == 422 and "not an email address" in refused.text
    # and each page's form has a token of its own: a new form invites again
    fresh = re.search(r'name="submission" value="([^"]+)"', again.text)[1]
    assert fresh != form["submission"]
