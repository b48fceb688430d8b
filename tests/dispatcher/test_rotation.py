"""Secret rotation: both secrets verify during the overlap, only the new one after it."""

from __future__ import annotations

import pytest
import standardwebhooks

from shared.webhooks import rotate_secret
from tests.dispatcher.support import drive, finish_task, set_endpoint, verify_body_signature


def deliver_one(runtime, account_id, receiver):
    finish_task(runtime, account_id)
    count = len(receiver.received)
    drive(runtime, lambda: len(receiver.received) == count + 1)
    return receiver.received[-1]


def test_rotation_signs_with_both_secrets_during_the_overlap(runtime, account, receiver):
    # given an account that rotates its secret
    old = account.secret
    with runtime.pool.connection() as conn:
        new = rotate_secret(conn, runtime.fernet, account.id, overlap_s=3600)
    assert new and new != old and new.startswith("whsec_")

    # when a message is delivered during the overlap
    got = deliver_one(runtime, account.id, receiver)

    # then the header carries two signatures, and either secret verifies it
    assert len(got.headers["Webhook-Signature"].split(" ")) == 2
    standardwebhooks.Webhook(old).verify(got.body, got.headers)
    standardwebhooks.Webhook(new).verify(got.body, got.headers)
    # and the body's signature uses the new secret
    assert verify_body_signature(new, got.body)
    assert not verify_body_signature(old, got.body)


def test_after_the_overlap_only_the_new_secret_verifies(runtime, account, receiver):
    # given a rotation whose overlap has run out
    old = account.secret
    with runtime.pool.connection() as conn:
        new = rotate_secret(conn, runtime.fernet, account.id, overlap_s=3600)
    set_endpoint(runtime, account.id, previous_secret_expires_at="now() - interval '1 second'")

    # when a message is delivered
    got = deliver_one(runtime, account.id, receiver)

    # then one signature is sent, the new secret verifies it and the old one does not
    assert len(got.headers["Webhook-Signature"].split(" ")) == 1
    standardwebhooks.Webhook(new).verify(got.body, got.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(got.body, got.headers)


def test_secrets_are_stored_encrypted(runtime, account):
    # given an endpoint / when its row is read / then the secret is not there in clear
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT secret_token FROM webhook_endpoints WHERE account_id = %s", (account.id,)
        ).fetchone()
    token = bytes(row["secret_token"])
    assert account.secret.encode() not in token
    assert runtime.fernet.decrypt(token).decode() == account.secret
