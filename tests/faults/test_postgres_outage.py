"""Postgres stopped for 15 s under load, with tasks running: our outage is never a client's 500,
nor a task's failure."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from tests.faults.conftest import launch_stack, new_account

pytestmark = pytest.mark.faults

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
OUTAGE_S = 15.0


@dataclass
class Client:
    """Creates tasks the way a careful client does: one Idempotency-Key per task, a 503 retried
    with the same key after Retry-After."""

    api_url: str
    headers: dict[str, str]
    # status, seconds taken, body, when it came (monotonic)
    answers: list[tuple[int, float, dict, float]] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)  # key -> task id
    errors: list[str] = field(default_factory=list)  # what ended a creating thread early
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, key: str, give_up_at: float) -> None:
        try:
            self._create(key, give_up_at)
        except Exception as exc:  # a thread's exception would otherwise only reach stderr
            with self.lock:
                self.errors.append(repr(exc))

    def _create(self, key: str, give_up_at: float) -> None:
        while time.monotonic() < give_up_at:
            t0 = time.monotonic()
            try:
                response = requests.post(
                    f"{self.api_url}/tasks",
                    json={"type": "check_eligibility", "data": JANE},
                    headers={**self.headers, "Idempotency-Key": key},
                    timeout=30,
                )
            except requests.RequestException as exc:  # counted as a failure below
                with self.lock:
                    self.answers.append((0, time.monotonic() - t0, {"error": str(exc)}, t0))
                continue
            elapsed = time.monotonic() - t0
            try:
                body = response.json()
            except ValueError:
                body = {"not_json": response.text[:300]}
            with self.lock:
                self.answers.append((response.status_code, elapsed, body, time.monotonic()))
            if response.status_code == 200:
                with self.lock:
                    self.created[key] = body["id"]
                return
            if response.status_code != 503:
                return
            assert response.headers.get("Retry-After", "").isdigit(), response.headers
            time.sleep(0.5)  # shorter than Retry-After: more requests during the outage


def _probe(url: str, samples: list[tuple[int, float, dict]], stop: threading.Event) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            response = requests.get(url, timeout=30)
            samples.append((response.status_code, time.monotonic() - t0, response.json()))
        except requests.RequestException as exc:
            samples.append((0, time.monotonic() - t0, {"error": str(exc)}))
        stop.wait(0.5)


def _rows(rt, sql: str, *params):
    with rt.pool.connection() as conn:
        return conn.execute(sql, params).fetchall()


def test_a_15_s_postgres_outage_answers_503_and_loses_no_task(
    tmp_path, settings, pg_cluster, redis_server, receiver
):
    with launch_stack(
        tmp_path, settings, database_url=pg_cluster.url(), redis_url=redis_server.url
    ) as (rt, stack):
        # given a batch of tasks on a slow portal, two of them running on the two browsers
        account = new_account(rt, receiver.url)
        client = Client(stack.api_url, account.headers)
        stack.sandbox_faults(slow_s=0.6, modal="never")
        for _ in range(4):
            client.create(uuid.uuid4().hex, time.monotonic() + 30)
        deadline = time.monotonic() + 60
        while len(_rows(rt, "SELECT id FROM tasks WHERE status = 'running'")) < 2:
            assert time.monotonic() < deadline, "two tasks never ran at once"
            time.sleep(0.2)
        running = [r["id"] for r in _rows(rt, "SELECT id FROM tasks WHERE status = 'running'")]

        # when Postgres stops for 15 s while clients keep creating tasks (more of them than the
        # API has threads) and the probes keep asking
        stop_probes = threading.Event()
        health: list = []
        ready: list = []
        probes = [
            threading.Thread(target=_probe, args=(f"{stack.api_url}/healthz", health, stop_probes)),
            threading.Thread(target=_probe, args=(f"{stack.api_url}/readyz", ready, stop_probes)),
        ]
        pg_cluster.stop("fast")
        for probe in probes:
            probe.start()
        creators = [
            threading.Thread(
                target=client.create, args=(uuid.uuid4().hex, time.monotonic() + OUTAGE_S + 40)
            )
            for _ in range(6)
        ]
        for creator in creators:
            creator.start()
        time.sleep(OUTAGE_S)
        ready_during = list(ready)
        # (taken before the restart: the clients' retries can get their 200s while pg_ctl is
        # still polling for the server it started; taken after, a loaded CI run found no 200
        # after it, most likely for that reason)
        back_at = time.monotonic()
        pg_cluster.start()
        for creator in creators:
            creator.join()
        assert client.errors == []
        after = [at for s, _, _, at in client.answers if s == 200 and at > back_at]
        assert after, [(s, round(at - back_at, 1), body) for s, _, body, at in client.answers]
        first_200_after = min(after)
        stack.sandbox_faults(slow_s=0)
        time.sleep(3)
        stop_probes.set()
        for probe in probes:
            probe.join()

        # then no client ever saw a 500 or waited on a hang: a JSON 503 while Postgres was down
        statuses = {status for status, *_ in client.answers}
        assert statuses <= {200, 503}, [a for a in client.answers if a[0] not in (200, 503)]
        assert 503 in statuses
        for status, elapsed, body, _ in client.answers:
            assert elapsed < 10, (status, elapsed)
            if status == 503:
                assert body["error"]["code"] == "service_unavailable"
        # liveness answered at once all along, even with every API thread waiting on the pool
        assert health and all(s == 200 and e < 2 for s, e, _ in health), health
        # readiness reported the outage, naming Postgres, and recovered
        down = [b for s, _, b in ready_during if s == 503]
        assert down and all("postgres" in b["error"]["details"] for b in down)
        assert ready[-1][2].get("status") == "ok", ready[-1]

        # and every task completed once: the ones running through the outage on their first
        # attempt, nothing lost, nothing duplicated, one `completed` webhook each
        assert len(client.created) == 4 + len(creators)
        deadline = time.monotonic() + 120
        while True:
            rows = _rows(rt, "SELECT id, status, attempts, notes FROM tasks ORDER BY id")
            if all(r["status"] in ("completed", "completed_with_issues", "failed") for r in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        assert sorted(r["id"] for r in rows) == sorted(client.created.values())
        assert all(r["status"] == "completed" for r in rows), rows
        assert all(r["attempts"] == 1 for r in rows if r["id"] in running), rows
        hooks = receiver.wait_for(len(rows), timeout_s=60)
        time.sleep(2)
        delivered = [json.loads(h["body"])["data"] for h in receiver.requests]
        assert sorted(d["id"] for d in delivered) == sorted(r["id"] for r in rows)
        assert {d["status"] for d in delivered} == {"completed"}
        print(
            f"\nPostgres outage {OUTAGE_S:.0f} s: {len(client.answers)} creates"
            f" ({sum(a[0] == 503 for a in client.answers)} x 503), {len(rows)} tasks,"
            f" lost 0, duplicated 0, first 200 {first_200_after - back_at:.1f} s after the"
            f" restart, webhooks {len(hooks)}"
        )
