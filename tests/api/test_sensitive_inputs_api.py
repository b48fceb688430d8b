"""Sensitive inputs through the API: an SOP may not template them; a task shows them as ***."""

from __future__ import annotations

import hashlib
import json

from cryptography.fernet import Fernet

from api import create_app
from shared.crypto import decrypt_json
from shared.runtime import build_runtime

SOP = """\
task_type: submit_appeal
title: Create a portal user
portal: sandbox
inputs:
  - {name: new_username, required: true}
  - {name: new_user_password, required: true, sensitive: true}
steps:
  - login: {}
  - fill: {label: New Password, secret: new_user_password}
outcomes:
  - status: completed
    notes: done
"""
YAML = {"Content-Type": "application/yaml"}


def _put(client, account, text: str):
    return client.put("/sops/submit_appeal", data=text, headers={**account.headers, **YAML})


def test_an_sop_that_templates_a_sensitive_input_is_422_naming_the_line(client, account):
    # given an SOP whose notes print the sensitive input
    text = SOP.replace("notes: done", "notes: 'Password {{ new_user_password }}'")
    # when it is stored or validated, then 422 names line 12 and says how to type it
    for response in (
        _put(client, account, text),
        client.post("/sops/validate", data=text, headers={**account.headers, **YAML}),
    ):
        assert response.status_code == 422, response.get_json()
        [detail] = response.get_json()["error"]["details"]
        assert detail["line"] == 12 and detail["path"] == "outcomes[0].notes"
        assert "sensitive input" in detail["message"] and "secret:" in detail["message"]


def test_every_answer_shows_the_sensitive_input_as_stars(client, account, runtime):
    assert _put(client, account, SOP).status_code == 201
    body = {"type": "submit_appeal", "data": "new_username: jdoe\nnew_user_password: pw-Zx81!q"}
    headers = {**account.headers, "Idempotency-Key": "create-jdoe"}
    # when the task is created, replayed, read and listed
    answers = [client.post("/tasks", json=body, headers=headers) for _ in range(2)]
    task_id = answers[0].get_json()["id"]
    answers += [
        client.get(f"/tasks/{task_id}", headers=account.headers),
        client.get("/tasks", headers=account.headers),
    ]
    # then each shows *** and never the value
    for answer in answers:
        assert answer.status_code == 200
        text = answer.get_data(as_text=True)
        assert "new_user_password: ***" in text and "pw-Zx81!q" not in text
    # and the value is kept only encrypted
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT data, inputs::text AS inputs, secret_inputs FROM tasks WHERE id = %s",
            (task_id,),
        ).fetchone()
    assert "pw-Zx81!q" not in row["data"] + row["inputs"]
    secret = decrypt_json(runtime.fernet, row["secret_inputs"])
    assert secret == {"new_user_password": "pw-Zx81!q"}


def test_a_malformed_sensitive_input_is_422_without_its_value(client, account):
    text = SOP.replace("sensitive: true}", "sensitive: true, format: npi}")
    assert _put(client, account, text).status_code == 201
    body = {"type": "submit_appeal", "data": "new_username: a\nnew_user_password: hunter2"}
    response = client.post("/tasks", json=body, headers=account.headers)
    assert response.status_code == 422
    assert "hunter2" not in response.get_data(as_text=True)
    assert response.get_json()["error"]["details"] == [
        {"field": "new_user_password", "message": "new_user_password is not a valid npi"}
    ]


def test_the_idempotency_record_keeps_no_guessable_hash_of_the_body(client, account, runtime):
    # given a task with a sensitive input, created with an Idempotency-Key
    assert _put(client, account, SOP).status_code == 201
    body = {"type": "submit_appeal", "data": "new_username: jdoe\nnew_user_password: pw-Zx81!q"}
    headers = {**account.headers, "Idempotency-Key": "create-jdoe"}
    first = client.post("/tasks", json=body, headers=headers)
    assert first.status_code == 200
    # then the stored digest is keyed: not the plain SHA-256 a copy of the database could test
    # guesses against
    with runtime.pool.connection() as conn:
        stored = conn.execute("SELECT request_digest FROM idempotency_keys").fetchone()
    plain = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    assert stored["request_digest"] != plain and len(stored["request_digest"]) == 64

    # when the encryption keys rotate (a new key first, the old one kept) and the client retries
    old_key = (runtime.settings.run_dir / "encryption.key").read_text().strip()
    rotated = runtime.settings.replace(encryption_keys=(Fernet.generate_key().decode(), old_key))
    rotated_runtime = build_runtime(rotated, pool_size=2)
    try:
        retry = create_app(runtime=rotated_runtime).test_client()
        replayed = retry.post("/tasks", json=body, headers=headers)
        changed = retry.post("/tasks", json={**body, "data": "x: y"}, headers=headers)
    finally:
        rotated_runtime.close()
    # then the same body still replays the first answer, and another body is still a 409
    assert replayed.status_code == 200 and replayed.get_json()["id"] == first.get_json()["id"]
    assert changed.status_code == 409
