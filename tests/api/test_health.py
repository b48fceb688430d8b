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


def test_readyz_names_what_is_down_within_its_bound(settings):
    # given an API whose Redis does not answer (nothing listens on its port)
    rt = build_runtime(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        client = create_app(runtime=rt).test_client()
        # when readiness is asked
        t0 = time.monotonic()
        response = client.get("/readyz")
        # then it is a JSON 503 naming Redis, promptly, with Postgres reported fine
        assert time.monotonic() - t0 < 10
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        error = response.get_json()["error"]
        assert error["code"] == "service_unavailable"
        assert "redis" in error["message"]
        assert error["details"]["postgres"] == "ok"
        assert error["details"]["redis"] != "ok"
    finally:
        rt.close()
