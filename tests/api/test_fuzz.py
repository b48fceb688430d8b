"""Property-based hostile input (hypothesis) over every endpoint, over every console form sent
by a signed-in admin, and over the SOP language.

Whatever a client sends, the API answers below 500, every error is in the JSON shape (a console
refusal is a page that says why), and the stack is healthy afterwards. The examples are bounded
so the whole file runs in well under a minute; run it with more (`HYPOTHESIS_PROFILE=long`) when
changing request parsing.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from shared.sop.library import builtin_sop_text
from shared.sop.task_types import TASK_TYPES
from tests.api.test_console import make_user, page_token, sign_in
from tests.api.test_review_api import _paused_task
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz

FUZZ = fuzz_settings(150, 1000)

# Values that broke something once, or could: NUL, lone surrogates, huge numbers, deep nesting.
NASTY_TEXT = [
    "\x00",
    "a\x00b",
    "%00",
    "\u00b2",
    "\u0663",
    "9" * 5000,
    "-1",
    "0",
    "99999999999999999999999",
    "k" * 3000,
    "{{ 'x' * 10**9 }}",
    "../../etc/passwd",
    "\u202e",
    "\ufeff",
    "http://127.0.0.1:1/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://[::1]:1/",
    "2026-12-02T09:00:00Z",
]
NASTY_JSON = [
    b'{"a": "\\ud800"}',
    b'{"type": "check_eligibility", "data": {"member_id": ' + b"9" * 5000 + b"}}",
    b"[" * 5000 + b"]" * 5000,
    b'{"data": ' + b"[" * 100 + b"]" * 100 + b"}",
    b"\xff\xfe{}",
    b'{"a": 1e999999}',
    b"",
    b"null",
    b'"\\u0000"',
]
KEYS = [
    "type",
    "data",
    "files",
    "username",
    "password",
    "totp_secret",
    "url",
    "enabled",
    "base_url",
    "sop",
    "code",
    "since",
    "until",
    "member_id",
    "dob",
    "service_lines",
]
CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "text/plain",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin-1",
    "text/html",
    "",
]

text = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5).map(lambda d: ("json", d)),
    st.sampled_from(NASTY_JSON).map(lambda b: ("raw", b)),
    st.binary(max_size=300).map(lambda b: ("raw", b)),
    st.dictionaries(st.sampled_from(KEYS), text, max_size=4).map(lambda d: ("form", d)),
    st.none().map(lambda _: ("none", None)),
)
headers = st.dictionaries(
    st.sampled_from(["Idempotency-Key", "Content-Type", "Accept", "X-Anything"]),
    st.one_of(
        st.text(max_size=30).map(lambda t: re.sub(r"[\r\n]", "", t)), st.sampled_from(["k" * 3000])
    ),
    max_size=2,
)


def _path(rule: str, values: list[str]) -> str:
    """The rule with each ``<converter:name>`` replaced by the next drawn value, URL-quoted."""
    it = iter(values)
    return re.sub(r"<[^>]+>", lambda _m: quote(next(it), safe=""), rule)


def _assert_answer(response, rule: str = "") -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:500])
    console_page = rule.startswith("/console") and response.mimetype == "text/html"
    if response.status_code >= 400 and console_page:
        # The console is for people in a browser: its refusals are pages that say why (a form's,
        # the form again with what is wrong; an editor's, the document with its errors' lines).
        page = response.get_data()
        assert re.search(rb'class="(error|card errors)" id="[a-z-]+"', page), page[:500]
    elif response.status_code >= 400:
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and set(body) == {"error"}, response.get_data()[:500]
        assert isinstance(body["error"]["code"], str) and body["error"]["code"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert "details" in body["error"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def fuzz_client(runtime):
    from api import create_app

    # A limit the fuzzer cannot reach, so that every example gets past the limiter.
    app = create_app(runtime.settings.replace(rate_limit="100000/second"), runtime=runtime)
    app.testing = True
    return app, app.test_client()


def _stack_is_healthy(client, account) -> None:
    assert client.get("/healthz").status_code == 200
    created = client.post(
        "/tasks",
        json={
            "type": "check_eligibility",
            "data": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15",
        },
        headers=account.headers,
    )
    assert created.status_code == 200, created.get_json()
    assert (
        client.get(f"/tasks/{created.get_json()['id']}", headers=account.headers).status_code == 200
    )


def test_every_endpoint_survives_hostile_requests(fuzz_client, account, runtime):
    app, client = fuzz_client
    rules = sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    )
    assert len(rules) > 20  # every endpoint, found from the app itself

    @FUZZ
    @given(
        target=st.sampled_from(rules),
        params=st.lists(st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(NASTY_TEXT)
                                  .filter(bool)), min_size=3, max_size=3),
        query=st.dictionaries(st.sampled_from(["limit", "cursor", "status", "type", "task_id",
                                               "since"]), text, max_size=3),
        body=bodies,
        extra=headers,
        content_type=st.sampled_from(CONTENT_TYPES),
        authenticated=st.booleans(),
    )  # fmt: skip
    def run(target, params, query, body, extra, content_type, authenticated):
        rule, method = target
        kind, payload = body
        request_headers = {**extra, **(account.headers if authenticated else {})}
        kwargs: dict[str, Any] = {"headers": request_headers, "query_string": query}
        if kind == "json":
            kwargs["json"] = payload
        elif kind == "raw":
            kwargs["data"], kwargs["content_type"] = payload, content_type
        elif kind == "form":
            kwargs["data"] = payload
            kwargs["content_type"] = "multipart/form-data"
        response = client.open(_path(rule, params), method=method, **kwargs)
        _assert_answer(response, rule)

    run()
    _stack_is_healthy(client, account)


ROOT = Path(__file__).resolve().parents[2]
# The names of every field the console's forms send, read from its templates, and the query
# parameters its pages read.
CONSOLE_FIELDS = sorted(
    set(re.findall(r'name="([a-z_]+)"', "".join(
        page.read_text() for page in (ROOT / "api/console/templates").rglob("*.html")
    ))) - {"csrf_token", "viewport"}
    | {"before", "count", "cursor", "next", "notice"}
)  # fmt: skip


def test_every_console_form_survives_hostile_values_from_a_signed_in_admin(
    fuzz_client, account, runtime
):
    # given an admin signed in to the console, with its form token, and a task paused for review
    app, client = fuzz_client
    make_user(runtime, account.id, "admin@c.test", "admin")
    task_id = _paused_task(runtime, client, account)
    browser = app.test_client()
    assert sign_in(browser, "admin@c.test").status_code == 303
    token = page_token(browser)
    # every console page and form, found from the app itself, with ids and names that exist
    known = {"task_id": str(task_id), "task_type": "check_eligibility", "name": "sandbox"}
    rules = sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("console.") and rule.rule != "/console/logout"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    )
    assert len(rules) > 30

    @FUZZ
    @given(
        target=st.sampled_from(rules),
        values=st.dictionaries(st.sampled_from(CONSOLE_FIELDS), text, max_size=6),
        upload=st.one_of(st.none(), st.binary(max_size=300), text.map(lambda t: t.encode(
            "utf-8", "surrogatepass"))),
    )  # fmt: skip
    def run(target, values, upload):
        rule, method = target
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: quote(known.get(m[1], "1"), safe=""), rule)
        if method == "GET":
            response = browser.get(path, query_string=values)
        else:
            form: dict[str, Any] = {**values, "csrf_token": token}
            if upload is not None:
                form["file"] = (io.BytesIO(upload), "clinic.csv")
            response = browser.post(path, data=form, content_type="multipart/form-data")
        # then the console answers each with a page below 500 (a refusal says why), or a redirect
        _assert_answer(response, rule)

    run()
    # and the admin is still signed in, and the stack healthy
    assert browser.get("/console/tasks").status_code == 200
    _stack_is_healthy(client, account)


def _sop_documents() -> st.SearchStrategy[str]:
    """Built-in SOPs with lines dropped, duplicated or replaced; random YAML; YAML tricks."""
    originals = [builtin_sop_text(t) for t in TASK_TYPES]

    def mutate(args: tuple[str, list[tuple[int, int, str]]]) -> str:
        text, edits = args
        lines = text.splitlines()
        for op, at, fragment in edits:
            i = at % max(len(lines), 1)
            if op == 0 and lines:
                del lines[i]
            elif op == 1:
                lines.insert(i, fragment)
            elif lines:
                lines[i] = lines[i].split(":")[0] + ": " + fragment
        return "\n".join(lines) + "\n"

    fragments = st.one_of(
        st.text(max_size=30),
        st.sampled_from(NASTY_TEXT),
        st.sampled_from(
            [
                "&a [*a]",
                "*nowhere",
                "!!python/object:os.system [ls]",
                "!!binary 'zz'",
                "{{ ",
                "'{{ range(10**9) | list }}'",
                "'{% for i in range(10**9) %}x{% endfor %}'",
                "[" * 300,
                "{a: " * 50,
                "<<: *x",
                "? [a, b]\n: c",
                "!!set {a, b}",
                "2026-13-45",
                ".nan",
                "0x" + "f" * 200,
                "\t- tab",
            ]
        ),
    )
    edits = st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 500), fragments), min_size=1, max_size=4
    )
    return st.one_of(
        st.tuples(st.sampled_from(originals), edits).map(mutate),
        json_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
        st.text(max_size=200),
        fragments.map(lambda f: f"task_type: check_eligibility\ntitle: {f}\n"),
    )


def test_the_sop_language_survives_hostile_documents(fuzz_client, account):
    _app, client = fuzz_client

    @FUZZ
    @given(
        document=_sop_documents(),
        as_json=st.booleans(),
        store=st.booleans(),
        task_type=st.sampled_from(TASK_TYPES),
    )
    def run(document, as_json, store, task_type):
        path = f"/sops/{task_type}" if store else "/sops/validate"
        method = client.put if store else client.post
        if as_json:
            response = method(path, json={"sop": document}, headers=account.headers)
        else:
            response = method(
                path,
                data=document.encode("utf-8", "surrogatepass"),
                content_type="application/yaml",
                headers=account.headers,
            )
        _assert_answer(response)

    run()
    # the stored SOPs, whatever they became, still answer, and tasks can still be created
    for task_type in TASK_TYPES:
        _assert_answer(client.get(f"/sops/{task_type}", headers=account.headers))
        client.delete(f"/sops/{task_type}", headers=account.headers)
    _stack_is_healthy(client, account)
