"""Hostile client input: every finding of the attack on a fresh stack answers a JSON 4xx, never a
500, and over-limit input names the limit it broke."""

from __future__ import annotations

import pytest

from api.pagination import encode_cursor
from shared.sop.library import builtin_sop_text

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _error(response, status: int) -> dict:
    """The JSON error of ``response``, which must have ``status``."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    assert body["error"]["message"]
    return body["error"]


def _limit(response, status: int, setting: str) -> dict:
    error = _error(response, status)
    assert error["code"] == ("payload_too_large" if status == 413 else "limit_exceeded"), error
    assert error["details"]["limit"] == setting, error
    assert setting in error["message"] or str(error["details"]["max"]) in error["message"]
    return error


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


# --- JSON bodies and task data ---------------------------------------------------------------


def test_deeply_nested_json_body_is_a_limit_not_a_500(client, account):
    body = '{"type": "check_eligibility", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(
        "/tasks", data=body, content_type="application/json", headers=account.headers
    )
    _limit(response, 422, "MAX_JSON_DEPTH")


def test_json_body_nested_past_the_limit_names_it(client, account):
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": _nested(60)}, headers=account.headers
    )
    _limit(response, 422, "MAX_JSON_DEPTH")


def test_deeply_nested_json_inside_text_data_is_refused(client, account):
    data = "[" * 20_000 + "]" * 20_000
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    _limit(response, 422, "MAX_DATA_DEPTH")


def test_data_nested_past_its_own_limit_is_refused(client, account):
    data = {"member_id": "W100000001", "extra": _nested(12)}
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    _limit(response, 422, "MAX_DATA_DEPTH")


def test_data_over_its_byte_limit_is_a_413(client, account):
    data = ELIGIBILITY + "\nnotes: " + "x" * (70 * 1024)
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    _limit(response, 413, "MAX_DATA_BYTES")


@pytest.mark.parametrize("where", ["body", "text"])
def test_integer_of_5000_digits_in_data_is_refused(client, account, where):
    digits = "9" * 5000
    if where == "body":
        body = '{"type": "check_eligibility", "data": {"member_id": ' + digits + "}}"
    else:
        body = '{"type": "check_eligibility", "data": "{\\"member_id\\": ' + digits + '}"}'
    response = client.post(
        "/tasks", data=body, content_type="application/json", headers=account.headers
    )
    error = _error(response, 422 if where == "text" else 400)
    assert "digits" in error["message"] or "digits" in str(error["details"])


# --- NUL bytes and invalid Unicode -------------------------------------------------------------


def test_nul_byte_in_data_is_refused(client, account):
    response = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": ELIGIBILITY + "\nnote: a\x00b"},
        headers=account.headers,
    )
    error = _error(response, 400)
    assert error["code"] == "invalid_text" and "NUL" in error["message"]


def test_nul_byte_in_a_data_key_is_refused(client, account):
    response = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": {"member\x00id": "W100000001"}},
        headers=account.headers,
    )
    assert _error(response, 400)["code"] == "invalid_text"


def test_nul_byte_in_a_file_content_type_is_refused(client, account):
    import io

    response = client.post(
        "/tasks",
        data={
            "type": "check_eligibility",
            "data": ELIGIBILITY,
            "files": (io.BytesIO(b"%PDF-1.4"), "a.pdf", "application/pdf\x00x"),
        },
        content_type="multipart/form-data",
        headers=account.headers,
    )
    assert _error(response, 400)["code"] == "invalid_text"


def test_nul_byte_in_a_multipart_field_is_refused(client, account):
    response = client.post(
        "/tasks",
        data={"type": "check_eligibility", "data": ELIGIBILITY + "\x00"},
        content_type="multipart/form-data",
        headers=account.headers,
    )
    assert _error(response, 400)["code"] == "invalid_text"


def test_nul_byte_in_a_credential_username_is_refused(client, account):
    response = client.put(
        "/credentials/sandbox",
        json={"username": "a\x00b", "password": "pw"},
        headers=account.headers,
    )
    assert _error(response, 400)["code"] == "invalid_text"


def test_nul_byte_in_a_webhook_url_is_refused(client, account):
    response = client.put(
        "/webhook-endpoint",
        json={"url": "http://127.0.0.1:9/\x00"},
        headers=account.headers,
    )
    assert _error(response, 400)["code"] == "invalid_text"


@pytest.mark.parametrize("path", ["/webhooks/messages/%00", "/credentials/a%00b"])
def test_nul_byte_in_a_path_is_refused(client, account, path):
    method = client.delete if path.startswith("/credentials") else client.get
    assert _error(method(path, headers=account.headers), 400)["code"] == "invalid_text"


def test_nul_byte_in_a_query_is_refused(client, account):
    response = client.get("/webhooks/messages?cursor=a%00", headers=account.headers)
    assert _error(response, 400)["code"] == "invalid_text"


@pytest.mark.parametrize("query", ["=null", "batch=3&=x", "&="])
def test_a_query_parameter_without_a_name_is_refused(client, account, query):
    response = client.get(f"/tasks?{query}", headers=account.headers)
    error = _error(response, 400)
    assert error["code"] == "bad_request" and "no name" in error["message"]


def test_a_header_that_is_not_utf8_is_refused_and_nothing_is_stored(client, account):
    # given a creation whose Idempotency-Key holds bytes that are not UTF-8 (a header's bytes
    # reach the app as latin-1 text)
    body = {"type": "check_eligibility", "data": ELIGIBILITY}
    bad = {**account.headers, "Idempotency-Key": b"key-\xff\xfe".decode("latin-1")}
    error = _error(client.post("/tasks", json=body, headers=bad), 400)
    # then it is refused as text that is not UTF-8, naming the header, and no task is made
    assert error["code"] == "invalid_text" and "UTF-8" in error["message"]
    assert error["details"] == {"where": "The header 'Idempotency-Key'"}
    assert client.get("/tasks", headers=account.headers).get_json()["data"] == []
    # while a key in UTF-8 beyond ASCII is a key like any other
    good = {**account.headers, "Idempotency-Key": "clé-1".encode().decode("latin-1")}
    first = client.post("/tasks", json=body, headers=good)
    again = client.post("/tasks", json=body, headers=good)
    assert first.status_code == again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]


@pytest.mark.parametrize(
    "url",
    ["/tasks?limit=1&limit=5", "/tasks?batch=1&batch=2", "/tasks?cursor=a&cursor=b",
     "/webhooks/messages?status=failed&status=delivered", "/audit-log?limit=2&limit=2",
     "/sops/check_eligibility/versions?cursor=x&cursor=y"],
)  # fmt: skip
def test_a_query_parameter_given_twice_is_refused_not_half_read(client, account, url):
    error = _error(client.get(url, headers=account.headers), 400)
    name = url.split("?")[1].split("=")[0]
    assert error["code"] == "bad_request" and error["details"]["parameter"] == name
    assert f"'{name}' is given 2 times" in error["message"]


def test_the_task_filters_take_several_values_repeated_or_joined(client, account):
    for query in ("status=pending&status=failed", "status=pending,failed", "type=check_eligibility"
                  "&type=submit_claim"):  # fmt: skip
        assert client.get(f"/tasks?{query}", headers=account.headers).status_code == 200


def test_lone_surrogate_in_json_is_refused(client, account):
    body = '{"username": "a\\ud800b", "password": "pw"}'
    response = client.put(
        "/credentials/sandbox",
        data=body,
        content_type="application/json",
        headers=account.headers,
    )
    error = _error(response, 400)
    assert error["code"] == "invalid_text" and "Unicode" in error["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_does_not_have_is_refused(client, account, constant):
    # Python's JSON reader takes them; JSON has no such numbers, and no client should store one
    body = f'{{"type": "check_eligibility", "data": {{"member_id": "W1", "copay": {constant}}}}}'
    response = client.post(
        "/tasks", data=body, content_type="application/json", headers=account.headers
    )
    error = _error(response, 400)
    assert error["code"] == "malformed_json", error


def test_body_that_is_not_utf8_is_refused(client, account):
    response = client.put(
        "/credentials/sandbox",
        data=b'{"username": "\xff\xfe", "password": "pw"}',
        content_type="application/json",
        headers=account.headers,
    )
    error = _error(response, 400)
    assert "UTF-8" in error["message"]


# --- ids, headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/%C2%B2",
        "/tasks/%D9%A3",
        "/tasks/99999999999999999999999",
        "/tasks/%C2%B2/trajectory",
        "/artifacts/%C2%B2",
        "/tasks/%C2%B2/cancel",
    ],
)
def test_an_id_that_is_not_ascii_digits_is_a_404(client, account, path):
    method = client.post if path.endswith("cancel") else client.get
    assert _error(method(path, headers=account.headers), 404)["code"] == "not_found"


@pytest.mark.parametrize("last_id", [2**63, 10**30, -1, -(10**30)])
@pytest.mark.parametrize("path", ["/tasks", "/audit-log", "/webhooks/messages"])
def test_a_cursor_past_a_bigint_or_below_zero_is_refused(client, account, path, last_id):
    # a tampered cursor: past a bigint it was compared as numeric, which no index serves, and
    # the page walked every row of the table (-10**30 matched none, so it read them all)
    response = client.get(f"{path}?cursor={encode_cursor(last_id)}", headers=account.headers)
    assert _error(response, 400)["code"] == "bad_cursor"


def test_long_idempotency_key_is_refused(client, account):
    response = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": ELIGIBILITY},
        headers={**account.headers, "Idempotency-Key": "k" * 3000},
    )
    _limit(response, 422, "MAX_IDEMPOTENCY_KEY_CHARS")


def test_too_many_files_is_a_413(client, account, runtime):
    import io

    limit = runtime.settings.max_files
    files = [(io.BytesIO(b"x"), f"f{i}.txt", "text/plain") for i in range(limit + 1)]
    response = client.post(
        "/tasks",
        data={"type": "submit_appeal", "data": ELIGIBILITY, "files": files},
        content_type="multipart/form-data",
        headers=account.headers,
    )
    _limit(response, 413, "MAX_FILES")


# --- SOP documents -----------------------------------------------------------------------------

BOMB = """\
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def _validate(client, account, text: str):
    return client.post(
        "/sops/validate", data=text, content_type="application/yaml", headers=account.headers
    )


def test_alias_bomb_is_refused_by_its_node_count(client, account):
    _limit(_validate(client, account, BOMB), 422, "MAX_SOP_NODES")


def test_self_referencing_alias_is_refused(client, account):
    error = _error(_validate(client, account, "a: &a [*a]\n"), 422)
    assert "alias" in str(error["details"])


def test_deeply_nested_sop_is_refused(client, account):
    _limit(_validate(client, account, "a: " + "[" * 5000 + "]" * 5000 + "\n"), 422, "MAX_SOP_DEPTH")


def test_5000_digit_integer_in_an_sop_is_refused(client, account):
    text = "x: " + "9" * 5000 + "\n" + builtin_sop_text("check_eligibility")
    error = _error(_validate(client, account, text), 422)
    assert "digits" in str(error["details"])


@pytest.mark.parametrize("char", ["\\0", "\\x01", "\\e", "\\x7f"])
def test_control_character_in_an_sop_is_refused(client, account, char):
    text = builtin_sop_text("check_eligibility").replace(
        "title:", f'title: "Eligibility{char}"\nold_title:', 1
    )
    response = client.put(
        "/sops/check_eligibility",
        data=text,
        content_type="application/yaml",
        headers=account.headers,
    )
    assert "control character" in str(_error(response, 422)["details"])


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f"])
def test_raw_control_character_in_an_sop_is_refused(client, account, char):
    text = builtin_sop_text("check_eligibility").replace("title:", f"x: a{char}b\ntitle:", 1)
    assert "control character" in str(_error(_validate(client, account, text), 422)["details"])


def test_raw_nul_in_an_sop_is_refused(client, account):
    text = builtin_sop_text("check_eligibility").replace("title:", "x: a\x00b\ntitle:", 1)
    assert _error(_validate(client, account, text), 400)["code"] == "invalid_text"


def test_sop_with_too_many_steps_is_refused(client, account, runtime):
    steps = "".join(f"  - screenshot: s{i}\n" for i in range(runtime.settings.max_sop_steps + 1))
    text = builtin_sop_text("check_eligibility").replace("steps:\n", "steps:\n" + steps, 1)
    _limit(_validate(client, account, text), 422, "MAX_SOP_STEPS")


def test_sop_over_its_byte_limit_is_a_413(client, account, runtime):
    text = "# " + "x" * runtime.settings.max_sop_bytes + "\n"
    _limit(_validate(client, account, text), 413, "MAX_SOP_BYTES")


def test_deeply_nested_template_is_a_422(client, account):
    text = builtin_sop_text("check_eligibility").replace(
        "title:", 'title: "{{ ' + "(" * 3000 + "1" + ")" * 3000 + ' }}"\nold_title:', 1
    )
    assert _error(_validate(client, account, text), 422)["code"] == "validation_failed"


# --- headers on every answer -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/tasks", "/tasks/1", "/nowhere"])
def test_every_answer_is_no_store_and_nosniff(client, account, path):
    response = client.get(path, headers=account.headers)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_multipart_data_over_its_limit_is_a_413(client, account):
    response = client.post(
        "/tasks",
        data={"type": "check_eligibility", "data": ELIGIBILITY + "\nnotes: " + "x" * 70_000},
        content_type="multipart/form-data",
        headers=account.headers,
    )
    _limit(response, 413, "MAX_DATA_BYTES")


def test_a_body_over_the_request_limit_names_it(runtime, account):
    from api import create_app

    app = create_app(runtime.settings.replace(max_request_bytes=1000), runtime=runtime)
    response = app.test_client().post(
        "/tasks",
        json={"type": "check_eligibility", "data": "x" * 2000},
        headers=account.headers,
    )
    _limit(response, 413, "MAX_REQUEST_BYTES")


@pytest.mark.parametrize(
    "environ",
    [
        {"PATH_INFO": "/tasks/\xff"},  # WSGI carries the raw bytes as latin-1
        {"PATH_INFO": "/credentials/\xc3\x28"},
        {"PATH_INFO": "/tasks", "QUERY_STRING": "status=%FF"},
    ],
)
def test_a_url_that_is_not_utf8_is_refused(client, account, environ):
    response = client.get("/", headers=account.headers, environ_overrides=environ)
    error = _error(response, 400)
    assert error["code"] == "invalid_text" and "UTF-8" in error["message"]


@pytest.mark.parametrize("ref", ["%C2%B2", "9" * 30, "msg_%C2%B2"])
def test_a_message_ref_of_unicode_digits_or_too_many_is_a_404(client, account, ref):
    # found by tests/api/test_fuzz.py: '²'.isdigit() is true, int('²') is not
    response = client.get(f"/webhooks/messages/{ref}", headers=account.headers)
    assert _error(response, 404)["code"] == "not_found"


@pytest.mark.parametrize("disposition", ['form-data; name="a\\"', "form-data"])
def test_a_form_field_without_a_readable_name_is_a_400(client, account, disposition):
    # found by tests/e2e/test_contract_stack.py: a name whose closing quote is escaped parses as
    # no name at all, and the screening of field names answered 500
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\nfalse\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ncheck_eligibility\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = client.post(
        "/tasks",
        data=body,
        headers={**account.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    error = _error(response, 400)
    assert error["code"] == "malformed_body" and "name" in error["message"]


def _task_count(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"]


def test_a_file_part_with_content_but_no_name_is_refused_not_dropped(client, account, runtime):
    import io

    def send(content: bytes):
        return client.post(
            "/tasks",
            data={"type": "check_eligibility", "data": ELIGIBILITY,
                  "files": (io.BytesIO(content), "", "application/pdf")},
            content_type="multipart/form-data", headers=account.headers,
        )  # fmt: skip

    # a file that would be lost is a 422 naming files, and no task is made without it
    [problem] = _error(send(b"%PDF-1.4"), 422)["details"]
    assert problem["field"] == "files" and "name each file part" in problem["message"]
    assert _task_count(runtime) == 0
    # a form's empty file input (no name, no content) is no file at all
    created = send(b"")
    assert created.status_code == 200 and created.get_json()["files"] == []


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_a_number_too_large_for_json_data_is_refused_not_stored_infinite(
    client, account, runtime, number
):
    # Python's JSON reader makes it infinite: in the body, and in data sent as JSON text
    body = f'{{"type": "check_eligibility", "data": {{"member_id": "W1", "copay": {number}}}}}'
    response = client.post(
        "/tasks", data=body, content_type="application/json", headers=account.headers
    )
    assert _error(response, 400)["code"] == "malformed_json"
    text = (
        f'{{"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15", "x": {number}}}'
    )
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": text}, headers=account.headers
    )
    assert "too large a number" in _error(response, 422)["details"][0]["message"]
    assert _task_count(runtime) == 0


@pytest.mark.parametrize("charge", [1e308, "1e999", "$9999999999999999999999999999999999"])
def test_an_amount_of_money_too_large_is_a_422_naming_it_not_a_500(client, account, charge):
    line = {"cpt": "99213", "icd10": "J06.9", "charge": charge, "service_date": "2025-03-20"}
    data = {"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15",
            "provider_npi": "1234567893", "service_lines": [line]}  # fmt: skip
    for path, body in (
        ("/tasks", {"type": "submit_claim", "data": data}),
        ("/tasks/batch", {"tasks": [{"type": "submit_claim", "data": data}]}),
    ):
        response = client.post(path, json=body, headers=account.headers)
        messages = [d["message"] for d in _error(response, 422)["details"]]
        assert any("more than any amount" in m for m in messages), messages
