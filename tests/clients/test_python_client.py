"""The Python client (clients/python) against the real API served on a loopback port."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask, jsonify, request
from standardwebhooks.webhooks import Webhook
from understudy_client import (
    OPERATIONS,
    ApiConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    Understudy,
    UnderstudyError,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from api.openapi import TASK_EXAMPLES
from shared.trajectories import record_step
from shared.webhooks import envelope_body, header_signature
from tests.conftest import ServedApp, free_port

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def served(app) -> Iterator[str]:
    server = ServedApp(app)
    yield server.url
    server.close()


@pytest.fixture
def api(served, account) -> Understudy:
    return Understudy(served, account.api_key, backoff_s=0.01)


def test_the_client_and_the_openapi_document_name_the_same_operations(client):
    document = client.get("/openapi.json").get_json()
    documented = {
        op["operationId"]: (method.upper(), path)
        for path, item in document["paths"].items()
        for method, op in item.items()
    }
    ours = dict(OPERATIONS)
    if "readyz" not in documented:  # added by the operability work; the client already knows it
        ours.pop("readyz")
    assert ours == documented


def test_create_get_list_cancel_and_typed_errors(api, account, runtime, tmp_path):
    created = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
    assert created["status"] in ("pending", "dispatching")
    with runtime.pool.connection() as conn:  # the client made an Idempotency-Key by itself
        keys = [r["key"] for r in conn.execute("SELECT key FROM idempotency_keys").fetchall()]
    assert len(keys) == 1 and keys[0].startswith("uc-")
    again = api.create_task(
        "check_eligibility", TASK_EXAMPLES["check_eligibility"], idempotency_key="mine"
    )
    assert (
        api.create_task(
            "check_eligibility", TASK_EXAMPLES["check_eligibility"], idempotency_key="mine"
        )["id"]
        == again["id"]
    )

    letter = tmp_path / "letter.pdf"
    letter.write_bytes(b"%PDF-1.4 appeal")
    with_files = api.create_task(
        "submit_appeal",
        TASK_EXAMPLES["submit_appeal"],
        files=[letter, ("notes.txt", b"see attached", "text/plain")],
    )
    # a file given by its path goes with the type its name says, as curl would send it
    assert [(f["filename"], f["size"], f["content_type"]) for f in with_files["files"]] == [
        ("letter.pdf", 15, "application/pdf"),
        ("notes.txt", 12, "text/plain"),
    ]

    assert api.get_task(created["id"])["id"] == created["id"]
    listed = [t["id"] for t in api.list_tasks(page_size=1)]  # one task per page: 3 pages
    assert listed == [with_files["id"], again["id"], created["id"]]
    assert [t["id"] for t in api.list_tasks(type=["submit_appeal"])] == [with_files["id"]]
    # by creation time: an aware datetime or ISO text; a naive datetime is refused before sending
    now = datetime.now(UTC)
    assert len(list(api.list_tasks(created_since=now - timedelta(hours=1)))) == 3
    assert list(api.list_tasks(created_before="2000-01-01")) == []
    with pytest.raises(ValueError, match="aware datetime"):
        api.list_tasks_page(created_since=datetime(2026, 12, 1))  # noqa: DTZ001 - the point

    assert api.cancel_task(created["id"])["status"] == "canceled"
    with pytest.raises(ConflictError) as conflict:
        api.cancel_task(created["id"])
    assert conflict.value.code == "task_finished" and conflict.value.status == 409
    with pytest.raises(ConflictError) as not_waiting:
        api.give_input(again["id"], "123456")
    assert not_waiting.value.code == "not_waiting"
    with pytest.raises(ValidationError) as invalid:
        api.create_task("check_eligibility", "member_id: W100000001")
    assert {d["field"] for d in invalid.value.details} == {"patient", "dob"}
    with pytest.raises(NotFoundError) as missing:
        api.get_task(999999)
    assert missing.value.code == "not_found"
    with pytest.raises(AuthenticationError):
        Understudy(api.base_url, "us_nope").get_task(created["id"])
    with pytest.raises(WaitTimeout) as waited:
        api.wait(again, timeout=0.3, poll_s=0.1)
    assert waited.value.task["id"] == again["id"]
    assert api.wait(created["id"], timeout=5)["status"] == "canceled"


def test_trajectory_and_artifact_download(api, account, runtime, tmp_path):
    task = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
    with runtime.pool.connection() as conn:  # as the worker records a failed step
        record_step(
            conn, task_id=task["id"], account_id=account.id, attempt=1, seq=1, name="sign in",
            status="failed", message="portal down", started_at=datetime.now(UTC),
            duration_ms=12, screenshot=PNG,
        )  # fmt: skip
    [step] = api.get_trajectory(task["id"])["steps"]
    assert step["name"] == "sign in"
    saved = tmp_path / "shot.png"
    assert api.download_artifact(step["screenshot"]["id"], to=saved) == PNG
    assert saved.read_bytes() == PNG


def test_sop_portal_credential_and_webhook_management(api, account):
    sops = api.list_sops()
    assert len(sops) == 5
    body = api.get_sop("check_eligibility")["body"]
    assert api.validate_sop(body)["valid"] is True
    edited = body.replace("title:", "title: Custom -", 1)
    assert api.put_sop("check_eligibility", edited)["builtin"] is False
    assert [h["version"] for h in api.get_sop("check_eligibility")["history"]] == [1]
    assert api.revert_sop("check_eligibility")["body"] == body
    with pytest.raises(ValidationError) as bad:
        api.validate_sop("task_type: nope\n")
    assert bad.value.details and all("message" in d for d in bad.value.details)

    assert api.put_portal("acme", "https://portal.acme.test/")["name"] == "acme"
    assert "acme" in [p["name"] for p in api.list_portals()]
    signing_in = api.put_portal("acme", "https://portal.acme.test/",
                                allowed_origins=["https://login.acme.test"])  # fmt: skip
    assert signing_in["allowed_origins"] == ["https://login.acme.test"]
    assert api.put_portal("acme", "https://portal.acme.test/")["allowed_origins"] == []
    api.set_credentials("acme", "me", "secret-pass", totp_secret="JBSWY3DPEHPK3PXP")
    assert {c["portal"]: c["has_totp"] for c in api.list_credentials()}["acme"] is True
    api.delete_credentials("acme")
    api.delete_portal("acme")
    assert "acme" not in [p["name"] for p in api.list_portals()]

    endpoint = api.update_webhook_endpoint(url="http://127.0.0.1:9/hook")
    assert endpoint["url"] == "http://127.0.0.1:9/hook"
    ping = api.test_webhook_endpoint()
    assert ping["event"] == "ping"
    assert [m["msg_id"] for m in api.list_webhook_messages()] == [ping["msg_id"]]
    assert api.get_webhook_message(ping["msg_id"])["attempts"] == []
    with pytest.raises(ConflictError) as pending:
        api.redeliver_webhook_message(ping["msg_id"])
    assert pending.value.code == "message_pending"
    assert api.recover_webhook_messages(datetime(2020, 1, 1, tzinfo=UTC)) == 0
    assert api.rotate_webhook_secret()["secret"].startswith("whsec_")
    assert api.get_webhook_endpoint()["previous_secret_expires_at"] is not None
    assert api.health() == {"status": "ok"}


class _Flaky:
    """A loopback server that answers 503/429 with Retry-After before it answers 200."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.hits: list[float] = []
        app = Flask("flaky")

        @app.get("/tasks/<int:task_id>")
        def task(task_id: int):
            self.hits.append(time.monotonic())
            status = self.answers.pop(0) if self.answers else 200
            if status != 200:
                body = {"error": {"code": "busy", "message": "try later", "details": None}}
                return jsonify(body), status, {"Retry-After": "1"}
            return jsonify({"id": task_id, "status": "completed"})

        self.server = ServedApp(app)


def test_retries_429_and_503_honouring_retry_after_then_gives_up():
    flaky = _Flaky([503, 429])
    try:
        api = Understudy(flaky.server.url, "k", backoff_s=0.01, max_retries=3)
        assert api.get_task(7) == {"id": 7, "status": "completed"}
        assert len(flaky.hits) == 3
        gaps = [b - a for a, b in zip(flaky.hits, flaky.hits[1:], strict=False)]
        assert all(gap >= 0.9 for gap in gaps), gaps  # Retry-After: 1 was waited, not 0.01 s

        flaky.answers[:] = [503] * 10
        flaky.hits.clear()
        with pytest.raises(ServiceUnavailableError) as err:
            Understudy(flaky.server.url, "k", max_retries=1, max_retry_wait_s=0.05).get_task(7)
        assert err.value.code == "busy" and len(flaky.hits) == 2  # bounded: 1 try + 1 retry
    finally:
        flaky.server.close()


def test_connection_errors_are_retried_then_raised():
    port = free_port()  # nothing listens there
    calls = []
    api = Understudy(f"http://127.0.0.1:{port}", "k", max_retries=2, backoff_s=0.01)
    original = api.session.request
    api.session.request = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[method-assign]
    with pytest.raises(ApiConnectionError):
        api.get_task(1)
    assert len(calls) == 3


class _AnswersHeldBack:
    """The real API behind a link that holds back the answers of the next ``held`` requests
    for ``hold_s``, after the API has carried them out: the client has given up on them by the
    time they come, as when a load balancer times out or a network drops on the way back."""

    def __init__(self, app, hold_s: float) -> None:
        self.app, self.hold_s, self.held = app, hold_s, 0

    def __call__(self, environ, start_response):
        answer = b"".join(self.app(environ, start_response))
        if self.held:
            self.held -= 1
            time.sleep(self.hold_s)
        return [answer]


def test_an_answer_lost_on_the_way_back_is_asked_again_only_where_repeating_is_safe(
    app, account, api
):
    # Given a link to the real API that loses the next answer (the client waits 1 s for it)
    link = _AnswersHeldBack(app, hold_s=3.0)
    server = ServedApp(link)
    try:
        lossy = Understudy(server.url, account.api_key, timeout_s=1.0, backoff_s=0.01)
        api.update_webhook_endpoint(url="http://127.0.0.1:9/hook")

        # When a secret's rotation loses its answer, it is sent again under its key: the
        # answer is the one rotation's secret, and the receivers' secret stays valid for the
        # overlap (a second rotation would have ended it at once)
        link.held = 1
        rotated = lossy.rotate_webhook_secret()
        rotations = [e for e in api.audit_log() if e["action"].endswith("/rotate-secret")]
        assert [e["detail"].get("replayed", False) for e in rotations] == [True, False]
        assert rotated["secret"].startswith("whsec_")

        # A cancel likewise: it answers the canceled task, never "task finished"
        task = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
        link.held = 1
        assert lossy.cancel_task(task["id"])["status"] == "canceled"

        # A deletion likewise, never "no such portal"
        api.put_portal("acme", "https://portal.acme.test/")
        link.held = 1
        lossy.delete_portal("acme")
        assert [p["name"] for p in api.list_portals()] == ["sandbox"]

        # A call sent without a key through the client's own request() is not sent again:
        # the error says it may have happened, never "task finished"
        other = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
        link.held = 1
        with pytest.raises(ApiConnectionError) as lost:
            lossy.request("cancel_task", path_params={"task_id": other["id"]})
        assert lost.value.maybe_applied and "may have been carried out" in lost.value.message
        assert api.get_task(other["id"])["status"] == "canceled"

        # Then a creation is sent again under its Idempotency-Key, and a read again: each
        # answers as if nothing was lost, and one task was created
        link.held = 1
        created = lossy.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
        assert [t["id"] for t in api.list_tasks()] == [created["id"], other["id"], task["id"]]
        link.held = 1
        assert lossy.get_task(created["id"])["id"] == created["id"]
    finally:
        server.close()


class _Gateway:
    """A loopback server answering as a gateway in front of the API would: each request gets
    the next of ``answers`` (502, 504, a Retry-After of no meaning on a 503, or 200 for a task
    still running), then 200 for a canceled task, or 204 for a deleted portal."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.hits: list[str] = []
        app = Flask("gateway")

        @app.route("/tasks/<int:task_id>", methods=["GET"])
        @app.route("/tasks/<int:task_id>/cancel", methods=["POST"])
        def task(task_id: int):
            self.hits.append(request.method)
            status, retry_after = self.answers.pop(0) if self.answers else (200, "")
            if status != 200:
                return "<h1>Bad gateway</h1>", status, {"Retry-After": retry_after}
            return jsonify({"id": task_id, "status": "running" if self.answers else "canceled"})

        @app.route("/portals/<name>", methods=["DELETE"])
        def portal(name: str):
            self.hits.append(request.method)
            status, _ = self.answers.pop(0) if self.answers else (204, "")
            return ("<h1>Bad gateway</h1>" if status != 204 else ""), status

        self.server = ServedApp(app)


@pytest.mark.parametrize("retry_after", ["soon", "nan", "inf", "Mon, 99 Foo 2026", "-3", ""])
def test_a_retry_after_of_no_meaning_waits_the_clients_own_backoff(retry_after):
    gateway = _Gateway([(503, retry_after), (429, retry_after)])
    try:
        api = Understudy(gateway.server.url, "k", backoff_s=0.01, max_retry_wait_s=0.5)
        assert api.get_task(7)["id"] == 7
        assert gateway.hits == ["GET"] * 3
    finally:
        gateway.server.close()


def test_a_gateways_502_or_504_is_retried_only_where_repeating_is_safe():
    gateway = _Gateway([(502, "0"), (504, "0")])
    try:
        api = Understudy(gateway.server.url, "k", backoff_s=0.01)
        assert api.get_task(7)["id"] == 7  # a read: asked again until answered
        assert gateway.hits == ["GET"] * 3

        gateway.hits.clear()
        gateway.answers[:] = [(502, "0")]
        assert api.cancel_task(7)["status"] == "canceled"  # a change under its key: likewise
        assert gateway.hits == ["POST"] * 2

        gateway.hits.clear()
        gateway.answers[:] = [(502, "0")]
        api.delete_portal("acme")  # a deletion under its key: likewise
        assert gateway.hits == ["DELETE"] * 2

        gateway.hits.clear()
        gateway.answers[:] = [(502, "0")]
        with pytest.raises(ApiConnectionError) as lost:  # one sent without a key: not repeated
            api.request("delete_portal", path_params={"name": "acme"})
        assert lost.value.maybe_applied and "not sent again" in lost.value.message
        assert gateway.hits == ["DELETE"]

        gateway.hits.clear()
        gateway.answers[:] = [(504, "0")] * 4
        with pytest.raises(ApiConnectionError) as lost:  # one under its key, retries spent
            api.cancel_task(7)
        assert lost.value.maybe_applied and "after the client's retries" in lost.value.message
        assert gateway.hits == ["POST"] * 4
    finally:
        gateway.server.close()


def test_an_error_page_that_is_not_the_apis_is_an_invalid_response():
    # given an address that is not the API's: its own HTML 404 and 405 pages
    gateway = _Gateway([])
    try:
        api = Understudy(gateway.server.url, "k")
        for call in (api.get_settings, lambda: api.get_batch(3), lambda: api.put_portal("a", "x")):
            with pytest.raises(UnderstudyError) as bad:
                call()
            # then it says so, never that the resource does not exist
            assert not isinstance(bad.value, NotFoundError)
            assert bad.value.code == "invalid_response" and bad.value.status in (404, 405)
            assert "is this the API's address?" in bad.value.message
        # and a 503 page of its own still means "nothing changed, try later"
        gateway.answers[:] = [(503, "0")] * 4
        with pytest.raises(ServiceUnavailableError):
            api.get_task(7)
    finally:
        gateway.server.close()


@pytest.mark.parametrize(
    ("timeout", "poll_s"),
    [(math.nan, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, -1.0), (1.0, math.nan), (1.0, math.inf)],
)
def test_a_wait_of_no_meaningful_time_is_refused_before_any_read(timeout, poll_s):
    gateway = _Gateway([])
    try:
        api = Understudy(gateway.server.url, "k")
        for wait in (api.wait, api.wait_batch):
            with pytest.raises(UnderstudyError) as bad:
                wait(7, timeout, poll_s=poll_s)
            assert bad.value.code == "invalid_argument" and "timeout" in bad.value.message
        assert gateway.hits == []
    finally:
        gateway.server.close()


def test_a_wait_rides_out_a_server_that_cannot_answer_for_a_while():
    # Given a task read once, then a server that answers 503 for longer than a call's retries
    gateway = _Gateway([(200, ""), *[(503, "0")] * 6, (200, "")])
    try:
        api = Understudy(gateway.server.url, "k", backoff_s=0.01, max_retries=1)
        # Then the wait goes on until the task ends, as if the server had not been away
        assert api.wait(7, timeout=30, poll_s=0.01)["status"] == "canceled"
        assert len(gateway.hits) == 8  # a read, six 503s, the canceled task

        # But a server that never answered is an error at once (a wrong address, a bad key)
        gateway.answers[:] = [(503, "0")] * 3
        with pytest.raises(ServiceUnavailableError):
            api.wait(7, timeout=30, poll_s=0.01)
        # and one that does not come back is its error once the wait's time is up
        gateway.answers[:] = [(200, ""), *[(503, "0")] * 10_000]
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            api.wait(7, timeout=0.5, poll_s=0.01)
        assert time.monotonic() - started >= 0.5
    finally:
        gateway.server.close()


def test_a_name_with_a_character_of_a_url_names_no_other_resource(api):
    # Given a portal acme
    api.put_portal("acme", "https://portal.acme.test/")
    # When names that carry a URL's own characters are used
    for name, code in [
        ("acme#2", "validation_failed"),  # the server's refusal of the name
        ("acme?x=1", "validation_failed"),
        ("acme%23", "validation_failed"),
        ("acme/profile", "invalid_argument"),  # another path: the client's own refusal
        ("..", "invalid_argument"),
    ]:
        # Then each is refused as a name, and never reaches acme ("acme#2" was acme)
        for call in (api.delete_portal, lambda n: api.put_portal(n, "https://other.test/")):
            with pytest.raises(UnderstudyError) as refused:
                call(name)
            assert refused.value.code == code, (name, refused.value)
    assert [p["base_url"] for p in api.list_portals() if p["name"] == "acme"] == [
        "https://portal.acme.test/"
    ]


def test_a_write_redirected_elsewhere_is_refused_not_turned_into_a_read(app, account, api):
    # Given a gateway that serves the API under /v2 and redirects every other path there
    def moved(environ, start_response):
        start_response("301 Moved", [("Location", "/v2" + environ["PATH_INFO"])])
        return [b""]

    server = ServedApp(DispatcherMiddleware(moved, {"/v2": app}))
    try:
        moved_api = Understudy(server.url, account.api_key)
        # When a task is created at the old address: a 301 would make the POST a GET, and
        # answer the list of tasks as if it were the new task. The client says where it was
        # sent instead, and creates nothing.
        with pytest.raises(UnderstudyError) as redirected:
            moved_api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
        assert redirected.value.status == 301 and redirected.value.code == "redirected"
        assert f"was redirected to {server.url}/v2/tasks" in redirected.value.message
        assert list(api.list_tasks()) == []
        # A read follows the redirect
        assert moved_api.list_tasks_page()["data"] == []
    finally:
        server.close()


def test_an_answer_that_is_not_json_is_the_clients_error_naming_the_address(served, account):
    # Given the console's address where the API's belongs (a page, not the API)
    api = Understudy(f"{served}/console", account.api_key)
    with pytest.raises(UnderstudyError) as wrong:
        api.list_tasks_page()
    assert wrong.value.code == "invalid_response"
    assert "not JSON: is this the API's address?" in wrong.value.message


def test_verify_webhook_accepts_the_servers_signature_and_refuses_tampering():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = envelope_body(
        secret, event="ping", created_at="2026-11-29T12:00:00.000Z",
        data={"message": "Test event from Understudy.", "accountId": 1},
    )  # fmt: skip
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": header_signature([secret], "msg_1", now, body),
    }
    envelope = verify_webhook(body, headers, secret)
    assert envelope["event"] == "ping"
    assert envelope == Webhook(secret).verify(body, headers)  # agrees with the reference library
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body.replace(b"ping", b"pong"), headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret, now=now + 3600)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, {**headers, "webhook-id": "msg_2"}, secret)
    assert json.loads(body)["data"]["accountId"] == 1


@pytest.mark.parametrize(
    "sent",
    [
        {"webhook-signature": "v1,\u00e9t\u00e9"},  # a header read as Latin-1, say
        {"webhook-signature": "v1,\u2603 v2,x"},
        {"webhook-signature": ""},
        {"webhook-timestamp": "\u0661\u0667\u0666\u0664"},  # digits, but not ASCII ones
        {"webhook-timestamp": " 1_764 "},
        {"webhook-timestamp": "1e9"},
        {"webhook-timestamp": "9" * 5000},  # past what int() takes from text
        {"webhook-id": "msg_\ud800"},  # a lone surrogate, from a caller rather than a server
    ],
    ids=[
        "non-ascii-signature",
        "snowman",
        "no-signature",
        "arabic-digits",
        "underscores",
        "exp",
        "5000-digits",
        "surrogate-id",
    ],
)
def test_verify_webhook_refuses_hostile_headers_with_its_own_error_only(sent):
    # given a delivery whose headers a sender made up
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    now = int(time.time())
    body = envelope_body(secret, event="ping", created_at="2026-11-29T12:00:00.000Z", data={})
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": header_signature([secret], "msg_1", now, body),
        **sent,
    }
    # then verifying it raises WebhookVerificationError, which a receiver answers with a 4xx,
    # and nothing a receiver would not catch (a TypeError from comparing non-ASCII text)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret, now=now)


def test_wait_returns_once_the_task_is_final(api):
    task = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])
    threading.Timer(0.5, api.cancel_task, args=[task["id"]]).start()
    assert api.wait(task, timeout=10, poll_s=0.1)["status"] == "canceled"


def test_the_audit_log_pages_through_the_calls_that_changed_something(api, account):
    api.update_webhook_endpoint(url="http://127.0.0.1:9/hook")
    api.test_webhook_endpoint()
    api.list_sops()  # a read: not recorded
    entries = list(api.audit_log(page_size=1))
    prefix = f"api_key:{account.api_key[:15]}"
    assert [(e["actor"], e["action"]) for e in entries] == [
        (prefix, "POST /webhook-endpoint/test"),
        (prefix, "PUT /webhook-endpoint"),
    ]


def test_create_tasks_sends_a_batch_once_and_refuses_it_whole(api, account):
    tasks = [{"type": t, "data": TASK_EXAMPLES[t]} for t in ("check_claim_status", "submit_appeal")]
    created = api.create_tasks(tasks, idempotency_key="batch-1")
    assert [t["type"] for t in created] == ["check_claim_status", "submit_appeal"]
    # a retry under the same key answers the same tasks and creates none
    assert api.create_tasks(tasks, idempotency_key="batch-1") == created
    assert [t["id"] for t in api.list_tasks()] == [t["id"] for t in reversed(created)]
    with pytest.raises(ValidationError) as refused:
        api.create_tasks([*tasks, {"type": "check_claim_status", "data": "note: none"}])
    assert [(d["task"], d["code"]) for d in refused.value.details] == [(2, "validation_failed")]
    assert len(list(api.list_tasks())) == 2


def test_a_batch_is_read_and_waited_for(api, account):
    tasks = [{"type": "check_claim_status", "data": TASK_EXAMPLES["check_claim_status"]}] * 2
    made = api.create_batch(tasks)
    batch = api.get_batch(made["batch_id"])
    assert batch["task_ids"] == [t["id"] for t in made["data"]] and batch["finished"] is False
    with pytest.raises(WaitTimeout, match="still has 2 unfinished tasks"):
        api.wait_batch(made, timeout=0.2, poll_s=0.05)
    for task in made["data"]:
        api.cancel_task(task["id"])
    done = api.wait_batch(made["batch_id"], timeout=5, poll_s=0.05)
    assert done["finished"] is True and done["counts"] == {"canceled": 2}
    api.create_task("check_claim_status", TASK_EXAMPLES["check_claim_status"])  # no batch's
    listed = api.list_tasks(batch=made["batch_id"], status=["canceled"], page_size=1)
    assert [t["id"] for t in listed] == [t["id"] for t in reversed(made["data"])]
    with pytest.raises(NotFoundError):
        api.get_batch(made["batch_id"] + 1000)


@pytest.mark.parametrize(
    ("read", "store", "listed", "name"),
    [(Understudy.get_sop, Understudy.put_sop, Understudy.list_sop_versions, "check_eligibility"),
     (Understudy.get_profile, Understudy.put_profile, Understudy.list_profile_versions,
      "sandbox")],
)  # fmt: skip
def test_version_lists_page_through_every_version_newest_first(api, read, store, listed, name):
    # given three versions of the account's own
    body = read(api, name)["body"]
    for n in range(3):
        store(api, name, body.replace("title:", f"title: Ours {n} -", 1))
    # when listed a page of one at a time, then every one comes, newest first
    versions = list(listed(api, name, page_size=1))
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions == read(api, name)["history"]


def test_an_unknown_types_versions_are_not_found(api):
    with pytest.raises(NotFoundError):
        list(api.list_sop_versions("check_horoscope"))
