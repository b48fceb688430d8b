"""The README's and docs' examples work as written: the receiver, JSON requests, the TOTP call.

The shell blocks themselves run in one session against a whole stack in test_shell_blocks.py;
these are the quick checks of the code a reader copies, with no stack.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import shlex
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import totp
from shared.webhooks import envelope_body, header_signature

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SANDBOX_DOC = (ROOT / "docs" / "sandbox.md").read_text()
WEBHOOKS_DOC = (ROOT / "docs" / "webhooks.md").read_text()
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def _module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


@functools.cache
def documented_body_check() -> Callable[[str, bytes], bool]:
    """``body_signature_ok``, the check of the body's own signature that docs/webhooks.md
    gives receivers (the dispatcher's tests verify deliveries with it)."""
    [source] = [b for b in _blocks(WEBHOOKS_DOC, "python") if "def body_signature_ok" in b]
    return _module(source, "body_check").body_signature_ok


def test_the_documented_body_check_refuses_a_hostile_body_without_raising():
    # given a delivery's body as the dispatcher signs it
    check = documented_body_check()
    body = envelope_body(SECRET, event="ping", created_at="2026-11-29T12:00:00.000Z", data={})
    assert check(SECRET, body)
    # when a sender makes up the body instead
    envelope = json.loads(body)
    for made_up in [
        {**envelope, "signature": "\u00e9t\u00e9"},  # text that is not ASCII
        {**envelope, "signature": 12},
        {**envelope, "signature": None},
        {k: v for k, v in envelope.items() if k != "signature"},
        {k: v for k, v in envelope.items() if k != "data"},
        [envelope],
    ]:
        # then the check says no, and raises nothing a receiver would have to catch
        assert check(SECRET, json.dumps(made_up).encode()) is False, made_up
    assert check(SECRET, b"\xff not json") is False
    assert check(SECRET, body.replace(b"ping", b"pong")) is False
    # nor for JSON that Python reads but cannot write back as UTF-8, or nests past its limits
    surrogate = body.replace(b'"data":{}', b'"data":"\\ud800"')
    assert surrogate != body and check(SECRET, surrogate) is False
    deep = body.replace(b'"data":{}', b'"data":' + b"[" * 100_000 + b"]" * 100_000)
    assert check(SECRET, deep) is False


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("UNDERSTUDY_WEBHOOK_SECRET", SECRET)
    [source] = [b for b in _blocks(README, "python") if '@app.post("/hook")' in b]
    return _module(source, "receiver").app.test_client()


def _delivery(event: str, data: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = envelope_body(SECRET, event=event, created_at="2026-11-29T12:00:00.000Z", data=data)
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": header_signature([SECRET], msg_id, now, body),
    }
    return body, headers


def test_the_readme_receiver_handles_ping_dedupes_and_refuses_forgeries(receiver):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ping, headers = _delivery("ping", {"message": "Test event.", "accountId": 1}, "msg_p")
        assert receiver.post("/hook", data=ping, headers=headers).status_code == 204
        task = {"id": 7, "status": "completed", "notes": "Coverage active."}
        body, headers = _delivery("task_finished", task, "msg_t")
        assert receiver.post("/hook", data=body, headers=headers).status_code == 204
        assert receiver.post("/hook", data=body, headers=headers).status_code == 204  # a retry
        forged = body.replace(b"completed", b"failed")
        assert receiver.post("/hook", data=forged, headers=headers).status_code == 401
    assert out.getvalue().splitlines() == ["ping: Test event.", "7 completed Coverage active."]


def _json_requests(text: str) -> list[tuple[str, str, dict]]:
    """(method, path, body) of every curl with a JSON -d in the shell blocks."""
    found = []
    for block in _blocks(text, "sh"):
        # one command per line that starts with curl, up to the next one; quotes may span lines
        for command in re.split(r"^(?=curl )", block.replace("\\\n", " "), flags=re.M):
            if not command.startswith("curl") or " -d " not in command:
                continue
            words = shlex.split(command, comments=True)
            url = next(w for w in words if w.startswith("http://127.0.0.1:8000/"))
            body = json.loads(words[words.index("-d") + 1])
            method = words[words.index("-X") + 1] if "-X" in words else "POST"
            found.append((method, url.removeprefix("http://127.0.0.1:8000"), body))
    return found


def test_every_json_request_of_the_readme_succeeds(client, account):
    requests_ = _json_requests(README)
    assert {path for _, path, _ in requests_} >= {"/tasks", "/webhooks/recover"}
    assert {b["type"] for _, p, b in requests_ if p == "/tasks"} >= {
        "check_eligibility",
        "submit_claim",
    }
    for method, path, body in requests_:
        response = client.open(path, method=method, json=body, headers=account.headers)
        assert response.status_code in (200, 202), (path, response.get_json())


def test_the_documented_pyotp_call_gives_the_code_the_sandbox_accepts():
    [source] = [b for b in _blocks(SANDBOX_DOC, "python") if "pyotp" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _module(source, "sandbox_totp")
    # shared.totp is what the agent signs in with (tests/sandbox signs in with it too)
    codes = {totp.code("JBSWY3DPEHPK3PXP", at=time.time() + d) for d in (-30, 0)}
    assert out.getvalue().strip() in codes


def test_the_readme_links_the_spec_the_docs_the_client_and_the_cli_reference():
    section = README.split("## API reference", 1)[1].split("\n## ", 1)[0]
    for link in (
        "(http://127.0.0.1:8000/openapi.json)",
        "(http://127.0.0.1:8000/docs)",
        "(clients/python/README.md)",
        "(docs/api-docs.png)",
    ):
        assert link in section, link
    assert (ROOT / "clients" / "python" / "README.md").is_file()
    # the CLI reference: a row for every command group of `understudy --help`
    for group in ("tasks", "sops", "portals", "credentials", "webhooks", "accounts", "keys"):
        assert f"`understudy {group} " in section, group


def test_the_readme_tells_how_to_check_the_service_is_up(client):
    # the README names both probes and what /healthz answers; the answer is that
    assert '`GET /healthz` answers 200 `{"status": "ok"}`' in README
    assert "`GET /readyz`" in README
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok"}


def test_every_setting_a_process_reads_is_in_the_readmes_table():
    from shared.settings import _ENV

    rows = {name for line in README.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}  # fmt: skip
    assert sorted(set(_ENV) - rows) == []
