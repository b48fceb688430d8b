"""A Postgres standby promoted after the primary crashes: a multi-host DATABASE_URL follows it."""

from __future__ import annotations

import time

import pytest

from api import create_app
from shared.runtime import build_runtime
from tests.faults.conftest import new_account
from tests.faults.services import PgCluster, server_dir

pytestmark = pytest.mark.faults

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def primary_and_standby():
    with server_dir() as root:
        primary, standby = PgCluster(root / "primary"), PgCluster(root / "standby")
        try:
            primary.init().start()
            primary.create_database()
            standby.standby_of(primary).start()
            # Commits wait for the standby, so the promotion cannot lose an acknowledged task.
            primary.require_sync_standby()
            yield primary, standby
        finally:
            standby.close()
            primary.close()


def test_the_api_follows_a_promoted_standby_without_a_restart(
    settings, primary_and_standby, redis_server
):
    primary, standby = primary_and_standby
    url = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/understudy"
        "?target_session_attrs=read-write"
    )
    rt = build_runtime(settings.replace(database_url=url, redis_url=redis_server.url))
    try:
        client = create_app(runtime=rt).test_client()
        account = new_account(rt)

        def create():
            return client.post(
                "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
            )

        # given tasks created on the primary
        before = [create() for _ in range(3)]
        assert [r.status_code for r in before] == [200, 200, 200]

        # when the primary crashes, the API answers 503 at once while only a standby is left
        primary.stop("immediate")
        t0 = time.monotonic()
        down = create()
        assert down.status_code == 503, down.get_json()
        assert down.headers["Retry-After"]
        assert time.monotonic() - t0 < 10
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "postgres" in ready.get_json()["error"]["details"]

        # and once the standby is promoted, the same process writes to it
        standby.promote()
        promoted = time.monotonic()
        while (after := create()).status_code != 200:
            assert after.status_code == 503, after.get_json()
            assert time.monotonic() - promoted < 30, "the API never found the new primary"
            time.sleep(0.2)
        recovered_s = time.monotonic() - promoted

        # then nothing acknowledged before the crash is missing, and nothing is doubled
        listed = client.get("/tasks", headers=account.headers).get_json()["data"]
        expected = [r.get_json()["id"] for r in before] + [after.get_json()["id"]]
        assert sorted(t["id"] for t in listed) == sorted(expected)
        assert client.get("/readyz").status_code == 200
        print(
            "\nPostgres promotion: 4 tasks, lost 0, duplicated 0,"
            f" 200 again {recovered_s:.1f} s after the promotion"
        )
    finally:
        rt.close()
