"""/metrics: Prometheus text, counts of what the API did, gauges read from Postgres and Redis."""

from __future__ import annotations

import time

import requests

from api import create_app
from shared import metrics
from shared.runtime import build_runtime
from tests.conftest import free_port
from tests.scrape import delta, parse, value

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _scrape(client, **headers: str):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def test_created_tasks_are_counted_and_the_queue_and_statuses_read_at_scrape(
    client, account, runtime
):
    # given a scrape before anything happened
    before = _scrape(client)
    assert value(before, "understudy_queue_depth", queue="agent") == 0
    # when a client creates two tasks (the worker is not running: they wait in the queue)
    for _ in range(2):
        response = client.post(
            "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
        )
        assert response.status_code == 200
    after = _scrape(client)
    # then the counter moved by two, and the gauges show two tasks waiting in Redis and Postgres
    assert delta(before, after, "understudy_tasks_created_total", type="check_eligibility") == 2
    assert value(after, "understudy_queue_depth", queue="agent") == 2
    assert value(after, "understudy_tasks_current", status="dispatching") == 2
    assert value(after, "understudy_oldest_queued_task_age_seconds") >= 0
    assert value(after, "understudy_metrics_source_up", source="postgres") == 1
    assert value(after, "understudy_metrics_source_up", source="redis") == 1


def test_a_canceled_queued_task_is_counted_as_finished(client, account):
    before = _scrape(client)
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    ).get_json()
    assert client.post(f"/tasks/{task['id']}/cancel", headers=account.headers).status_code == 200
    after = _scrape(client)
    assert (
        delta(
            before,
            after,
            "understudy_tasks_finished_total",
            type="check_eligibility",
            status="canceled",
        )
        == 1
    )


def test_open_breakers_are_counted_from_postgres(client, make_account, runtime):
    # given two endpoints, one whose circuit breaker is open
    tripped, _healthy = make_account("Tripped"), make_account("Healthy")
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_endpoints SET circuit_open_until = now() + interval '1 minute'"
            " WHERE account_id = %s",
            (tripped.id,),
        )
    # when scraped / then one is open
    assert value(_scrape(client), "understudy_webhook_endpoints_breaker_open") == 1


def test_open_portal_outages_are_counted_by_cause_with_the_oldests_age(
    client, make_account, runtime
):
    # given no outage / then none is counted, of either cause
    scraped = _scrape(client)
    for cause in ("down", "signed_in_elsewhere"):
        assert value(scraped, "understudy_portal_outages", cause=cause) == 0
        assert value(scraped, "understudy_portal_outage_oldest_seconds", cause=cause) == 0
    # given two accounts whose sandbox portal went down, one of them ten minutes ago, and a
    # third whose user has been refused for five minutes, signed in elsewhere
    accounts = make_account("One"), make_account("Two"), make_account("Three")
    causes = ("down", "down", "signed_in_elsewhere")
    with runtime.pool.connection() as conn:
        for account, ago, cause in zip(
            accounts, ("10 minutes", "1 minute", "5 minutes"), causes, strict=True
        ):
            conn.execute(
                "INSERT INTO portal_outages (account_id, portal, since, error, cause,"
                " next_probe_at) VALUES (%s, 'sandbox', now() - %s::interval, 'HTTP 503', %s,"
                " now())",
                (account.id, ago, cause),
            )
    # when scraped / then each cause counts its own, with its own oldest
    scraped = _scrape(client)
    assert value(scraped, "understudy_portal_outages", cause="down") == 2
    assert 600 <= value(scraped, "understudy_portal_outage_oldest_seconds", cause="down") < 660
    assert value(scraped, "understudy_portal_outages", cause="signed_in_elsewhere") == 1
    elsewhere = value(
        scraped, "understudy_portal_outage_oldest_seconds", cause="signed_in_elsewhere"
    )
    assert 300 <= elsewhere < 360


def test_a_source_that_does_not_answer_is_left_out_promptly(settings):
    # given an API whose Redis does not answer (nothing listens on its port)
    rt = build_runtime(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        client = create_app(runtime=rt).test_client()
        # when scraped
        t0 = time.monotonic()
        samples = _scrape(client)
        # then it answers, without the queue depths, and says Redis is down
        assert time.monotonic() - t0 < 10
        assert value(samples, "understudy_metrics_source_up", source="redis") == 0
        assert value(samples, "understudy_metrics_source_up", source="postgres") == 1
        assert not any(name == "understudy_queue_depth" for name, _ in samples)
    finally:
        rt.close()


def test_metrics_token_requires_the_bearer(runtime):
    # given METRICS_TOKEN set
    rt = build_runtime(runtime.settings.replace(metrics_token="scrape-me"))
    try:
        client = create_app(runtime=rt).test_client()
        # then a scrape without it, or with another, is a JSON 401; with it, the metrics
        for headers in ({}, {"Authorization": "Bearer nope"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert response.get_json()["error"]["code"] == "unauthorized"
        samples = _scrape(client, Authorization="Bearer scrape-me")
        assert value(samples, "understudy_metrics_source_up", source="postgres") == 1
    finally:
        rt.close()


def test_a_process_without_an_api_serves_its_hosts_metrics_on_metrics_port(settings):
    # given METRICS_PORT (a worker, dispatcher or scheduler in a pod of its own)
    server = metrics.serve_metrics_port(settings.replace(metrics_port=free_port()))
    assert server is not None
    try:
        # when scraped there / then it answers the process's metrics in Prometheus text
        response = requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        assert response.status_code == 200
        assert ("understudy_browsers", frozenset()) in parse(response.text)
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.serve_metrics_port(settings) is None  # no port, no server


def test_a_second_process_of_the_host_leaves_metrics_port_to_the_first(settings, caplog):
    # given METRICS_PORT served by one process of the host (understudy run starts several)
    first = metrics.serve_metrics_port(settings.replace(metrics_port=free_port()))
    assert first is not None
    try:
        # when another process starts with the same setting, then it serves nothing, says so
        # in one line (no error, no traceback), and the first still answers
        caplog.set_level("INFO", logger="shared.metrics")
        taken = settings.replace(metrics_port=first.server_port)
        assert metrics.serve_metrics_port(taken) is None
        [line] = [r for r in caplog.records if "served by another process" in r.getMessage()]
        assert line.levelname == "INFO" and line.exc_info is None
        response = requests.get(f"http://127.0.0.1:{first.server_port}/metrics", timeout=5)
        assert response.status_code == 200
    finally:
        first.shutdown()
        first.server_close()


def test_metrics_port_asks_for_the_metrics_token_as_the_api_does(settings):
    # given METRICS_PORT with METRICS_TOKEN set
    guarded = settings.replace(metrics_port=free_port(), metrics_token="s3cret-token")
    server = metrics.serve_metrics_port(guarded)
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        # when scraped without the token, or with another, then it is a 401 and no series
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = requests.get(url, headers=headers, timeout=5)
            assert refused.status_code == 401, headers
            assert refused.json()["error"]["code"] == "unauthorized"
            assert "understudy_" not in refused.text
        # and with it, the series
        allowed = requests.get(url, headers={"Authorization": "Bearer s3cret-token"}, timeout=5)
        assert allowed.status_code == 200
        assert ("understudy_browsers", frozenset()) in parse(allowed.text)
    finally:
        server.shutdown()
        server.server_close()
