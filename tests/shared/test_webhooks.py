"""The webhook aggregate: secrets and signatures, the SSRF address policy, the outbox queries."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime

import pytest
import standardwebhooks

from shared.accounts import create_account
from shared.ssrf import UrlRefused, address_refusal, check_url
from shared.webhooks import (
    body_signature,
    claim_due_messages,
    create_endpoint,
    endpoint_json,
    enqueue_ping,
    enqueue_task_finished,
    envelope_body,
    get_endpoint,
    header_signature,
    list_messages,
    new_secret,
)

# --- Secrets and signatures ------------------------------------------------------------------


def test_new_secret_is_standard_webhooks_format():
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert new_secret() != secret


def test_header_signature_matches_the_reference_library():
    secret = new_secret()
    body = envelope_body(secret, event="ping", created_at="2026-11-29T12:00:00.000Z", data={})
    timestamp = int(datetime.now(UTC).timestamp())
    ours = header_signature([secret], "msg_1", timestamp, body)
    theirs = standardwebhooks.Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    assert ours == theirs


def test_header_lists_one_signature_per_secret():
    first, second = new_secret(), new_secret()
    value = header_signature([first, second], "msg_1", 1700000000, b"{}")
    assert [part.split(",")[0] for part in value.split(" ")] == ["v1", "v1"]


def test_envelope_is_the_reference_shape_with_a_body_signature():
    secret = new_secret()
    data = {"id": 1, "status": "completed", "notes": "Müller, coverage active"}
    body = envelope_body(secret, event="task_finished", created_at="2026-11-29T12:00:00.000Z",
                         data=data)  # fmt: skip
    envelope = json.loads(body)
    assert list(envelope) == ["signature", "event", "created_at", "data"]
    assert envelope["signature"] == body_signature(
        secret, event="task_finished", created_at="2026-11-29T12:00:00.000Z", data=data
    )


# --- SSRF address policy ---------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("0.0.0.0", "unspecified"),  # noqa: S104 (a refused target, not a bind)
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "not a public"),  # carrier-grade NAT
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.215.14"]


@pytest.mark.parametrize(("address", "label"), REFUSED)
def test_forbidden_addresses_are_refused_with_a_reason(address, label):
    reason = address_refusal(ipaddress.ip_address(address))
    assert reason is not None and label in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    # the checker only: no traffic is sent to these
    assert address_refusal(ipaddress.ip_address(address)) is None
    check_url(f"https://{address if ':' not in address else f'[{address}]'}/hooks", False)


@pytest.mark.parametrize(("address", "_label"), REFUSED)
def test_urls_with_forbidden_literal_hosts_are_refused(address, _label):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UrlRefused, match="forbidden address"):
        check_url(f"http://{host}:8080/hooks", False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hooks", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://127.0.0.1:70/", "http:// or https://"),
        ("http:///nohost", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "malformed"),
    ],
)
def test_unusable_urls_are_refused(url, reason):
    with pytest.raises(UrlRefused, match=reason):
        check_url(url, True)


def test_a_name_resolving_to_any_private_address_is_refused():
    # given a name with a public and a private address (a common rebinding trick)
    def resolver(host, port):
        return ["93.184.215.14", "10.0.0.7"]

    with pytest.raises(UrlRefused, match="10.0.0.7 is a private"):
        check_url("https://hooks.example.com/", False, resolver=resolver)


def test_allow_private_lets_local_receivers_through():
    check_url("http://127.0.0.1:8080/hooks", True)
    check_url("http://localhost:8080/hooks", True)


def test_names_resolving_to_loopback_are_refused():
    with pytest.raises(UrlRefused, match="loopback"):
        check_url("http://localhost:8080/hooks", False)


# --- Outbox and endpoint queries -------------------------------------------------------------


@pytest.fixture
def account_id(runtime) -> int:
    with runtime.pool.connection() as conn:
        account = create_account(conn, "Acme Health")
        create_endpoint(conn, runtime.fernet, account, "http://127.0.0.1:9/hooks")
    return account


def _task(conn, account_id: int) -> int:
    sop = conn.execute(
        "INSERT INTO sops (task_type, version, body, digest)"
        " VALUES ('check_eligibility', 1, '', md5(random()::text)) RETURNING id"
    ).fetchone()
    seq = conn.execute(
        "UPDATE accounts SET task_seq = task_seq + 1 WHERE id = %s RETURNING task_seq",
        (account_id,),
    ).fetchone()
    return conn.execute(
        "INSERT INTO tasks (account_id, task_number, type, status, title, instructions, sop_id)"
        " VALUES (%s, %s, 'check_eligibility', 'completed', 'T', 'I', %s) RETURNING id",
        (account_id, seq["task_seq"], sop["id"]),
    ).fetchone()["id"]


def test_enqueue_task_finished_is_idempotent(runtime, account_id):
    with runtime.pool.connection() as conn:
        task_id = _task(conn, account_id)
        for _ in range(3):
            enqueue_task_finished(conn, account_id=account_id, task_id=task_id,
                                  payload={"id": task_id})  # fmt: skip
        rows = list_messages(conn, account_id, before_id=None, limit=10)
    assert len(rows) == 1
    assert rows[0]["status"] == "pending" and rows[0]["msg_id"].startswith("msg_")
    assert rows[0]["payload"] == {"id": task_id}


def test_enqueue_rolls_back_with_the_callers_transaction(runtime, account_id):
    # the outbox row commits or rolls back with the task's final state
    with runtime.pool.connection() as conn:
        task_id = _task(conn, account_id)
    with pytest.raises(RuntimeError), runtime.pool.connection() as conn:
        enqueue_task_finished(conn, account_id=account_id, task_id=task_id, payload={})
        raise RuntimeError("the worker's transaction failed")
    with runtime.pool.connection() as conn:
        assert list_messages(conn, account_id, before_id=None, limit=10) == []


def test_claim_skips_disabled_endpoints_and_open_circuits(runtime, account_id):
    with runtime.pool.connection() as conn:
        enqueue_ping(conn, account_id)
        conn.execute("UPDATE webhook_endpoints SET enabled = false")
        assert claim_due_messages(conn, limit=10, lock_s=5) == []
        conn.execute(
            "UPDATE webhook_endpoints SET enabled = true,"
            " circuit_open_until = now() + interval '1 minute'"
        )
        assert claim_due_messages(conn, limit=10, lock_s=5) == []
        conn.execute("UPDATE webhook_endpoints SET circuit_open_until = NULL")
        claimed = claim_due_messages(conn, limit=10, lock_s=5)
        assert len(claimed) == 1
        # claimed messages are not claimed again while the claim lasts
        assert claim_due_messages(conn, limit=10, lock_s=5) == []


def test_claim_skips_messages_not_yet_due(runtime, account_id):
    with runtime.pool.connection() as conn:
        enqueue_ping(conn, account_id)
        conn.execute("UPDATE webhook_messages SET next_attempt_at = now() + interval '1 minute'")
        assert claim_due_messages(conn, limit=10, lock_s=5) == []


def test_endpoint_json_never_shows_the_secret(runtime, account_id):
    with runtime.pool.connection() as conn:
        shown = endpoint_json(get_endpoint(conn, account_id))
    assert "secret" not in json.dumps(shown).replace("previous_secret_expires_at", "")
    assert shown["url"] == "http://127.0.0.1:9/hooks" and shown["enabled"] is True
