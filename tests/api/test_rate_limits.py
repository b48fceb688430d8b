"""Per-account rate limits (RATE_LIMIT), counted in the real Redis: 429 JSON with Retry-After."""

from __future__ import annotations

import pytest

from api import create_app


@pytest.fixture
def limited_client(runtime):
    app = create_app(runtime.settings.replace(rate_limit="3/minute"), runtime=runtime)
    app.testing = True
    return app.test_client()


def test_an_account_over_its_rate_limit_gets_429_with_retry_after(limited_client, make_account):
    # given two accounts and a limit of 3 requests a minute
    first, second = make_account("One"), make_account("Two")
    # when the first sends 4 requests
    answers = [limited_client.get("/tasks", headers=first.headers) for _ in range(4)]
    # then the first 3 are served and the 4th is a JSON 429 naming the limit, with Retry-After
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    error = answers[3].get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == "RATE_LIMIT"
    assert "3 per 1 minute" in error["message"]
    retry_after = int(answers[3].headers["Retry-After"])
    assert 1 <= retry_after <= 120  # a sliding window resets within two windows
    assert answers[3].headers["Cache-Control"] == "no-store"
    # and the limit is per account: the second account is still served
    assert limited_client.get("/tasks", headers=second.headers).status_code == 200
    # and /healthz is never limited
    assert all(limited_client.get("/healthz").status_code == 200 for _ in range(5))


def test_requests_without_a_valid_key_are_limited_by_address(limited_client, account):
    # given a client guessing keys
    bad = {"Authorization": "Bearer us_nope_nope"}
    # when it tries 4 times
    statuses = [limited_client.get("/tasks", headers=bad).status_code for _ in range(4)]
    # then the 4th try is refused before any key is looked up
    assert statuses == [401, 401, 401, 429]
    # and a real account is not affected
    assert limited_client.get("/tasks", headers=account.headers).status_code == 200


def test_rate_limit_setting_is_checked_at_start():
    from shared.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        load_settings({"RATE_LIMIT": "lots"})
    assert load_settings({"RATE_LIMIT": "off"}).rate_limit == "off"


def test_counts_follow_redis_sentinel_when_redis_url_names_it(settings):
    from api.limits import storage_uri

    sentinel = settings.replace(
        redis_url="sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379/0",
        redis_sentinel_master="primary",
    )
    assert storage_uri(sentinel) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/primary"
    assert storage_uri(settings) == settings.redis_url
