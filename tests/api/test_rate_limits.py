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


def test_behind_a_trusted_proxy_requests_without_a_key_are_limited_by_the_clients_address(
    runtime, account
):
    # given the API behind one load balancer: every request comes from its address
    app = create_app(
        runtime.settings.replace(rate_limit="3/minute", trusted_proxies=1), runtime=runtime
    )
    client = app.test_client()
    bad = {"Authorization": "Bearer us_nope_nope"}

    def from_(address: str) -> int:
        return client.get("/tasks", headers={**bad, "X-Forwarded-For": address}).status_code

    # when one client guesses keys until it is limited
    statuses = [from_("203.0.113.20") for _ in range(4)]
    # then it is, and another client at another address is not
    assert statuses == [401, 401, 401, 429]
    assert from_("198.51.100.20") == 401


def test_trusted_proxies_setting_is_checked_at_start():
    from shared.settings import SettingsError, load_settings

    assert load_settings({"TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        load_settings({"TRUSTED_PROXIES": "-1"})


def test_rate_limit_setting_is_checked_at_start():
    from shared.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        load_settings({"RATE_LIMIT": "lots"})
    assert load_settings({"RATE_LIMIT": "off"}).rate_limit == "off"


def test_counts_follow_redis_sentinel_when_redis_url_names_it(settings):
    from api.rate_limits import storage_uri

    sentinel = settings.replace(
        redis_url="sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379/0",
        redis_sentinel_master="primary",
    )
    assert storage_uri(sentinel) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/primary"
    assert storage_uri(settings) == settings.redis_url


def test_every_limit_is_checked_and_the_429_names_the_one_that_is_full(runtime, make_account):
    app = create_app(runtime.settings.replace(rate_limit="1000/second;3/minute"), runtime=runtime)
    client = app.test_client()
    account = make_account()
    answers = [client.get("/tasks", headers=account.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].get_json()["error"]["details"]["max"] == "3 per 1 minute"


def test_retry_after_is_when_the_sliding_window_has_room_again():
    from api.rate_limits import Limit

    limit = Limit(3, 60, "3 per 1 minute")
    # this window is full: wait for the next one, until enough of this one has slid out
    assert limit.retry_after_s(elapsed=10, previous=0, current=3) == 50 + 20
    # the previous window's weight fills it: wait until enough of it has slid out
    assert limit.retry_after_s(elapsed=30, previous=3, current=1) == 10
    assert limit.retry_after_s(elapsed=59.9, previous=9, current=2) == 1  # never 0


def test_requests_are_served_uncounted_while_redis_is_unreachable(runtime, account):
    from tests.conftest import free_port

    dead = runtime.settings.replace(
        rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    client = create_app(dead, runtime=runtime).test_client()
    assert [client.get("/tasks", headers=account.headers).status_code for _ in range(3)] == [
        200
    ] * 3


def test_the_limiter_finds_the_master_through_the_sentinels(settings):
    from shared.redis_link import redis_client

    client = redis_client("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380/3", "primary")
    pool = client.connection_pool
    assert pool.service_name == "primary"
    assert [
        c.connection_pool.connection_kwargs["port"] for c in pool.sentinel_manager.sentinels
    ] == [26379, 26380]
    assert pool.connection_kwargs["db"] == 3


def test_the_count_goes_on_after_redis_drops_its_connections_and_its_scripts(
    limited_client, account, settings
):
    import redis

    # given an account that used 2 of its 3 requests a minute
    assert [limited_client.get("/tasks", headers=account.headers).status_code
            for _ in range(2)] == [200, 200]  # fmt: skip
    # when Redis forgets its scripts and closes every connection, as a restart does
    admin = redis.Redis.from_url(settings.redis_url)
    admin.script_flush()
    admin.client_kill_filter(_type="normal", skipme=True)
    # then the third request is counted, and the fourth is over the limit
    answers = [limited_client.get("/tasks", headers=account.headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
