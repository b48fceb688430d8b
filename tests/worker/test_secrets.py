"""Secrets are typed, never read: hostile SOPs run as real tasks against the sandbox portal.

Each test runs `worker.runner.run_task` with a real browser, then looks at everything a client or
an operator can see of the task: the API's task and trajectory, the webhook message, the database
rows and the logs (at DEBUG, where Selenium logs every command it sends).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import pytest
import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET
from worker import runner

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Tr0ub4dor&3-horse"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def _put_sop(client, account, text: str, task_type: str = "check_eligibility") -> None:
    response = client.put(
        f"/sops/{task_type}", data=text, headers=account.headers, content_type="text/yaml"
    )
    assert response.status_code in (200, 201), response.get_json()


def _without_sign_in_rule(client, account) -> None:
    """Store a sandbox profile that says nothing about signing in, as portals had no profile
    before: the SOPs here sign in themselves, and only the old sign tells the sign-in page."""
    response = client.put(
        "/portals/sandbox/profile",
        data=b"portal: sandbox\ntitle: Sandbox without a sign-in rule\n",
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.get_json()


def _run(rt, client, account, browsers, data, task_type: str = "check_eligibility") -> dict:
    created = client.post("/tasks", json={"type": task_type, "data": data}, headers=account.headers)
    assert created.status_code == 200, created.get_json()
    task_id = created.get_json()["id"]
    runner.run_task(rt, task_id, browsers=browsers)
    return {"created": created.get_data(as_text=True), "id": task_id}


def _everything_seen(rt, client, account, task_id: int, logs) -> dict[str, str]:
    """Every place a secret could surface, as text."""
    headers = account.headers
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT t.data, t.notes, t.result::text, t.inputs::text, t.irreversible_step"
            " FROM tasks t WHERE t.id = %s",
            (task_id,),
        ).fetchone()
        steps = conn.execute(
            "SELECT name, message FROM trajectory_steps WHERE task_id = %s", (task_id,)
        ).fetchall()
        webhooks = conn.execute(
            "SELECT payload::text AS body FROM webhook_messages WHERE task_id = %s", (task_id,)
        ).fetchall()
    return {
        "task (API)": client.get(f"/tasks/{task_id}", headers=headers).get_data(as_text=True),
        "tasks (API)": client.get("/tasks", headers=headers).get_data(as_text=True),
        "trajectory (API)": client.get(f"/tasks/{task_id}/trajectory", headers=headers).get_data(
            as_text=True
        ),
        "task row": json.dumps(rows, default=str),
        "trajectory rows": json.dumps(steps),
        "webhook bodies": "\n".join(w["body"] for w in webhooks),
        "logs": logs.text,
    }


def _encodings(secret: str) -> list[str]:
    """The plain secret and what template filters make of it."""
    forms = {secret, secret[::-1], secret.upper(), secret.lower(), secret.title()}
    forms.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    forms.add(secret.encode().hex())
    forms.add("-".join(secret))
    forms.add(json.dumps(list(secret)))
    return sorted(forms)


def _assert_nowhere(seen: dict[str, str], *secrets: str) -> None:
    for secret in secrets:
        for form in _encodings(secret):
            for where, text in seen.items():
                assert form.lower() not in text.lower(), f"{form!r} is in the {where}"


def _task(rt, client, account, task_id: int) -> dict:
    return client.get(f"/tasks/{task_id}", headers=account.headers).get_json()


# --- stored credentials ------------------------------------------------------------------

# The finding: a sign-in step that cannot finish (a button that is not there), marked optional,
# leaves the typed password in the form; the next step reads it back. (The first sign-in step,
# never run, only sets what the engine takes for the sign-in page, so the form on screen is not
# mistaken for an expired session.)
READ_PASSWORD_SOP = """
task_type: check_eligibility
title: Read the password field back
portal: sandbox
steps:
  - if: "false"
    then:
      - login: {password_label: Not on this portal}
  - login: {url: /login, button: No such button}
    optional: true
    timeout_s: 1
  - extract: {into: pw, text: {label: Password}}
    optional: true
  - extract: {into: pw2, attribute: value, from: {css: "input[type=password]"}}
    optional: true
outcomes:
  - status: completed
    notes: "{{ pw }} {{ pw | reverse }} {{ pw2 | upper }} {{ pw | list | join('-') }}"
"""


def test_reading_the_password_field_is_refused_and_the_task_fails(
    rt, client, account, browsers, logs
):
    # given an SOP that tries to read the password the sign-in step typed, on the sign-in page
    # (which a profile's sign-in rule would recognise, and sign in again instead of reading)
    _without_sign_in_rule(client, account)
    _put_sop(client, account, READ_PASSWORD_SOP)
    # when it runs as a task
    run = _run(rt, client, account, browsers, "member_id: W100000001")
    # then it fails at the first read, saying why, even though the step is optional
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "failed"
    assert "password field" in task["notes"] and "refused" in task["notes"]
    assert task["result"] is None
    # and the password is nowhere, in any form
    seen = _everything_seen(rt, client, account, run["id"], logs)
    _assert_nowhere(seen, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)


# Every way a template could reach a stored secret by name.
SECRET_IN_NOTES_SOP = """
task_type: check_eligibility
title: Put the secret in the notes through filters
portal: sandbox
steps:
  - login: {url: /dashboard}
  - set:
      a: "password | default('')"
      b: "credentials | default('')"
      c: "totp_secret | default('')"
outcomes:
  - status: completed
    notes: >-
      {{ a | reverse }} {{ b | upper }} {{ c | urlencode }} {{ a | tojson }}
      {{ a | list | join(' ') }} {{ (a ~ b ~ c) | title }}
"""


def test_stored_secrets_are_in_no_template_context(rt, client, account, browsers, logs):
    # given an SOP whose notes pass every name a secret could have through filters
    _put_sop(client, account, SECRET_IN_NOTES_SOP)
    # when it runs
    run = _run(rt, client, account, browsers, "member_id: W100000001")
    # then it signed in (the password was typed) and still nothing secret came out
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "completed", task["notes"]
    seen = _everything_seen(rt, client, account, run["id"], logs)
    _assert_nowhere(seen, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)


# --- sensitive inputs --------------------------------------------------------------------

CREATE_USER_SOP = """
task_type: submit_appeal
title: Create a portal user
portal: sandbox
inputs:
  - name: new_username
    required: true
  - name: new_user_password
    required: true
    sensitive: true
    aliases: [initial_password]
steps:
  - login: {url: /users/new}
  - fill: {label: New Username, value: "{{ new_username }}"}
  - fill: {label: New Password, secret: new_user_password}
  - fill: {label: Confirm Password, secret: new_user_password}
  - click: {button: Create user}
  - wait_for: {text: was created}
outcomes:
  - status: completed
    notes: "Created {{ new_username }}."
"""


def test_a_sensitive_input_is_typed_and_shown_as_stars_everywhere(
    rt, client, account, browsers, logs, sandbox_url
):
    # given an SOP that types a task's new-user password, marked sensitive
    _put_sop(client, account, CREATE_USER_SOP, "submit_appeal")
    # when a task sends that password as data
    data = f"new_username: jdoe\nnew_user_password: {NEW_PASSWORD}\nnote: for the front desk"
    run = _run(rt, client, account, browsers, data, "submit_appeal")
    # then the creation answer already shows it as ***
    created = json.loads(run["created"])
    assert "new_user_password: ***" in created["data"]
    assert "new_username: jdoe" in created["data"]
    # and the portal got exactly that password, typed twice
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "completed", task["notes"]
    [user] = requests.get(f"{sandbox_url}/__sandbox/submissions", timeout=5).json()["users"]
    assert user["username"] == "jdoe"
    assert user["password_sha256"] == hashlib.sha256(NEW_PASSWORD.encode()).hexdigest()
    # and the trajectory says a secret was typed, without the secret
    steps = client.get(f"/tasks/{run['id']}/trajectory", headers=account.headers).get_json()
    messages = [s["message"] for s in steps["steps"]]
    assert any("***" in m for m in messages), messages
    # and it is nowhere else, in any form: not the answer, the row, the webhook or the logs
    seen = _everything_seen(rt, client, account, run["id"], logs)
    seen["creation answer"] = run["created"]
    _assert_nowhere(seen, NEW_PASSWORD, SANDBOX_PASSWORD)
    # and at rest it is only in an encrypted column
    with rt.pool.connection() as conn:
        row = conn.execute("SELECT secret_inputs FROM tasks WHERE id = %s", (run["id"],)).fetchone()
    assert row["secret_inputs"] and NEW_PASSWORD.encode() not in bytes(row["secret_inputs"])


def test_a_sensitive_input_in_json_data_under_an_alias_is_masked(rt, client, account):
    # given the same SOP and the password under an alias in JSON data
    _put_sop(client, account, CREATE_USER_SOP, "submit_appeal")
    body = {"type": "submit_appeal", "data": {"New Username": "jdoe", "Initial-Password": "pw-1"}}
    created = client.post("/tasks", json=body, headers=account.headers)
    assert created.status_code == 200, created.get_json()
    # then the task's data keeps the client's keys and hides the value
    data = json.loads(created.get_json()["data"])
    assert data == {"New Username": "jdoe", "Initial-Password": "***"}
    with rt.pool.connection() as conn:
        row = conn.execute(
            "SELECT data, inputs::text FROM tasks WHERE id = %s", (created.get_json()["id"],)
        ).fetchone()
    assert "pw-1" not in row["data"] and "pw-1" not in row["inputs"]


READ_TYPED_SECRET_SOP = """
task_type: submit_appeal
title: Type the secret into a plain field, then read it back
portal: sandbox
inputs:
  - name: new_user_password
    required: true
    sensitive: true
steps:
  - login: {url: /users/new}
  - fill: {label: New Username, secret: new_user_password}
  - extract: {into: got, text: {label: New Username}}
outcomes:
  - status: completed
    notes: "{{ got | reverse }}"
"""


def test_a_field_a_sensitive_input_was_typed_into_cannot_be_read(
    rt, client, account, browsers, logs
):
    # given an SOP that types the secret into a text field and reads that field
    _put_sop(client, account, READ_TYPED_SECRET_SOP, "submit_appeal")
    # when it runs
    run = _run(rt, client, account, browsers, f"new_user_password: {NEW_PASSWORD}", "submit_appeal")
    # then the read is refused and the task fails
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "failed"
    assert "refused" in task["notes"] and "secret was typed" in task["notes"]
    seen = _everything_seen(rt, client, account, run["id"], logs)
    _assert_nowhere(seen, NEW_PASSWORD, SANDBOX_PASSWORD)


REFLECTED_SECRET_SOP = """
task_type: submit_appeal
title: Type the secret where the portal shows it back, then read the page
portal: sandbox
inputs:
  - name: new_user_password
    required: true
    sensitive: true
steps:
  - login: {url: /users/new}
  - fill: {label: New Username, secret: new_user_password}
  - fill: {label: New Password, value: "short"}
  - click: {button: Create user}
  - extract: {into: kept, attribute: value, from: {label: New Username}}
outcomes:
  - status: completed
    notes: "kept {{ kept }} / {{ kept | reverse }}"
"""


def test_a_secret_the_portal_shows_back_is_scrubbed_as_it_is_read(
    rt, client, account, browsers, logs
):
    # given a form that, refused, shows back what was typed in New Username (a fresh page)
    _put_sop(client, account, REFLECTED_SECRET_SOP, "submit_appeal")
    # when the SOP reads that new field
    run = _run(rt, client, account, browsers, f"new_user_password: {NEW_PASSWORD}", "submit_appeal")
    # then the value read is scrubbed before any template sees it
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "completed", task["notes"]
    assert task["result"] == {"kept": "***"}
    assert task["notes"] == "kept *** / ***"
    seen = _everything_seen(rt, client, account, run["id"], logs)
    _assert_nowhere(seen, NEW_PASSWORD)


# The sign-in step told that the password goes in a search box: the next page would show it.
PASSWORD_IN_A_SEARCH_BOX_SOP = """
task_type: check_eligibility
title: Type the password where the portal shows it back
portal: sandbox
steps:
  - login: {url: /dashboard}
  - select: {label: Payer, option: Sandbox Health}
  - click: {button: Continue}
  - login: {url: /claim-status, password_label: Claim Number, button: Search}
outcomes:
  - status: completed
    notes: done
"""


def test_the_sign_in_step_types_the_password_only_into_a_password_field(
    rt, client, account, browsers, logs
):
    # given an SOP whose second sign-in step names a search field as the password field (with
    # the sandbox's profile, that page is not its sign-in page: nothing would be typed at all)
    _without_sign_in_rule(client, account)
    _put_sop(client, account, PASSWORD_IN_A_SEARCH_BOX_SOP)
    # when it runs
    run = _run(rt, client, account, browsers, "member_id: W100000001")
    # then nothing is typed there, and the task fails saying why
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "failed"
    assert 'field "Claim Number" is not one' in task["notes"] and "Refused" in task["notes"]
    _assert_nowhere(_everything_seen(rt, client, account, run["id"], logs), SANDBOX_PASSWORD)


# Selectors as an oracle: match/no-match on what a field holds tells a secret one guess at a time.
ORACLE_SOP = """
task_type: check_eligibility
title: Guess the password with selectors
portal: sandbox
steps:
  - if: "false"
    then:
      - login: {password_label: Not on this portal}
  - login: {url: /login, button: No such button}
    optional: true
    timeout_s: 1
  - PROBE
    optional: true
outcomes:
  - status: completed
    notes: "{{ hit }}"
"""


@pytest.mark.parametrize(
    ("probe", "said"),
    [
        (
            'extract: {into: hit, exists: {css: "input[type=password]"}}',
            "may not test a field that holds a secret",
        ),
        (
            "wait_for: {visible: {css: \"input[{{ 'val' ~ 'ue' }}^='s']\"}, into: hit}",
            "may not test what a field holds",
        ),
    ],
)
def test_a_selector_that_could_guess_a_secret_is_refused(
    rt, client, account, browsers, logs, probe, said
):
    # given a password typed by a sign-in step left half-done, and a selector probing the field
    _put_sop(client, account, ORACLE_SOP.replace("PROBE", probe))
    # when it runs
    run = _run(rt, client, account, browsers, "member_id: W100000001")
    # then the probe is refused, optional or not, and the task fails
    task = _task(rt, client, account, run["id"])
    assert task["status"] == "failed" and said in task["notes"], task["notes"]
    _assert_nowhere(_everything_seen(rt, client, account, run["id"], logs), SANDBOX_PASSWORD)
