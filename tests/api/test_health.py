from __future__ import annotations

import time

from api import create_app
from shared.runtime import build_runtime
from tests.conftest import free_port


def test_healthz_answers_ok(client):
    # given a running API / when asked for health / then it answers ok
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_readyz_reports_postgres_and_redis_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


def test_readyz_stays_ready_without_redis_and_says_so_within_its_bound(settings, account):
    # given an API whose Redis does not answer (nothing listens on its port)
    rt = build_runtime(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        client = create_app(runtime=rt).test_client()
        # when readiness is asked
        t0 = time.monotonic()
        response = client.get("/readyz")
        # then it is ready, degraded, naming Redis, promptly: a pod out of the load balancer
        # would refuse the tasks that it still takes (they wait for the scheduler to send them)
        assert time.monotonic() - t0 < 10
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "degraded"
        assert body["checks"]["postgres"] == "ok"
        # and says why: refused, which points at a Redis that is down (not one that hangs)
        assert "refused" in body["checks"]["redis"], body["checks"]
        task = {"type": "check_claim_status", "data": "claim_number: CLM-PAID-0001"}
        created = client.post("/tasks", json=task, headers=account.headers)
        assert created.status_code == 200 and created.get_json()["status"] == "pending"
    finally:
        rt.close()


def test_readyz_is_a_503_naming_postgres_when_the_database_is_gone(settings):
    # given an API whose database does not answer (nothing listens on its port)
    gone = f"postgresql://understudy@127.0.0.1:{free_port()}/understudy"
    rt = build_runtime(settings.replace(database_url=gone))
    try:
        response = create_app(runtime=rt).test_client().get("/readyz")
        # then it is not ready: a JSON 503 naming Postgres, with Redis reported fine
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        error = response.get_json()["error"]
        assert error["code"] == "service_unavailable" and "postgres" in error["message"]
        assert error["details"]["redis"] == "ok" and error["details"]["postgres"] != "ok"
    finally:
        rt.close()


def test_readyz_never_shows_the_database_password_libpq_quotes(settings, caplog):
    # given a DATABASE_URL whose password has a '%' not percent-encoded: libpq refuses it and
    # quotes the password in its error
    malformed = f"postgresql://app:Pg%zzSecretPw@127.0.0.1:{free_port()}/understudy"
    rt = build_runtime(settings.replace(database_url=malformed))
    try:
        # when anyone (readiness needs no key) asks /readyz
        response = create_app(runtime=rt).test_client().get("/readyz")
        # then it is a 503 naming Postgres, without the password
        assert response.status_code == 503
        assert "postgres" in response.get_json()["error"]["details"]
        assert "SecretPw" not in response.get_data(as_text=True)
    finally:
        rt.close()


def test_the_key_listener_never_logs_the_database_password(settings, caplog):
    # given the API keys' listener on a DATABASE_URL libpq refuses, quoting the password
    from shared.memo import NotifiedMemo

    malformed = f"postgresql://app:Pg%zzSecretPw@127.0.0.1:{free_port()}/understudy"
    memo: NotifiedMemo[int] = NotifiedMemo(malformed, "api_keys")
    try:
        # when it tries to listen and logs why it cannot
        with caplog.at_level("WARNING"):
            memo._start()
            deadline = time.monotonic() + 10
            while "cannot listen" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        # then the line says why, without the password
        assert "cannot listen for api_keys changes yet" in caplog.text
        assert "SecretPw" not in caplog.text
    finally:
        memo.close()
