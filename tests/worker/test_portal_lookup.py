"""The worker checks its portal's address before it opens a browser, looking the name up within
``LOOKUP_TIMEOUT_S`` in the process's capped lookup threads (shared.lookup): a portal whose DNS
hangs costs the task that wait, and the task waits for the portal like one the browser cannot
reach; every lookup thread taken is ours, and the task goes back in line, never failed.

The system resolver is stood in for by one that hangs on names under ``hangs.test`` (as in
tests/api/test_name_lookups.py); the portal is registered while private addresses are allowed
(no lookup), and the worker checks it as production does.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from shared import outages
from shared.lookup import Lookups, NameTimedOut
from shared.ssrf import system_resolver
from tests.api import test_name_lookups
from tests.api.test_name_lookups import HangingDns
from tests.worker.support import on_local_portal, sandbox_runtime
from tests.worker.test_extract_limits import SOP
from worker import runner

dns = test_name_lookups.dns  # the fixture: getaddrinfo that hangs on *.hangs.test


@pytest.fixture
def rt(runtime, sandbox_url):
    """A worker checking every portal name, waiting 0.3 s for one."""
    return sandbox_runtime(runtime, sandbox_url, portal_allow_private=False, lookup_timeout_s=0.3)


def _hanging_portal_task(client, account) -> int:
    on_local_portal(
        client, account, "https://portal.hangs.test", password="hangs-test-pass", sop=SOP
    )
    response = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": {"target": "/", "what": "text"}},
        headers=account.headers,
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _task(client, account, task_id: int) -> dict:
    return client.get(f"/tasks/{task_id}", headers=account.headers).get_json()


def test_a_portal_whose_name_hangs_waits_as_unreachable_once_the_lookup_times_out(
    rt, client, account, browsers, dns: HangingDns
):
    # given a task on a portal whose DNS never answers
    task_id = _hanging_portal_task(client, account)

    # when a worker runs it
    status = runner.run_task(rt, task_id, browsers=browsers)

    # then it ended while the lookup still hung, the portal unreachable: the task waits for it
    # as for any portal that cannot be reached, saying why
    assert dns.started == 1 and dns.ended == 0, "the worker waited for the lookup to give up"
    assert status is None
    task = _task(client, account, task_id)
    assert task["status"] == "waiting_for_portal", task
    assert "portal.hangs.test" in task["notes"] and "did not resolve in time" in task["notes"]


def test_with_no_outage_wait_it_fails_as_a_portal_error(
    rt, client, account, browsers, dns: HangingDns
):
    # given a worker that never waits for a portal, and a task on a portal whose DNS hangs
    rt = dataclasses.replace(rt, settings=rt.settings.replace(portal_outage_wait_s=0))
    task_id = _hanging_portal_task(client, account)

    # when a worker runs it, then it fails while the lookup still hangs, as a portal error
    assert runner.run_task(rt, task_id, browsers=browsers) == "failed"
    assert dns.ended == 0
    task = _task(client, account, task_id)
    assert task["notes"].startswith("Portal error: the portal could not be reached")
    assert "did not resolve in time" in task["notes"]


def test_with_every_lookup_thread_taken_the_task_goes_back_in_line(
    rt, client, account, browsers, dns: HangingDns
):
    # given a worker whose one lookup thread waits on another account's name that hangs
    lookups = Lookups(system_resolver, max_threads=1)
    with pytest.raises(NameTimedOut):
        lookups.resolve("other.hangs.test", 443, deadline=time.monotonic() + 0.05, owner=-1)
    task_id = _hanging_portal_task(client, account)

    # when it runs a task on a portal that needs a lookup
    status = runner.run_task(rt, task_id, browsers=browsers, lookups=lookups)

    # then the task's name was never looked up, and the task is not failed: it is back in
    # line, its attempt not counted, for the scheduler to send again
    assert status is None
    assert (dns.started, dns.ended) == (1, 0)
    task = _task(client, account, task_id)
    assert (task["status"], task["attempts"], task["startedAt"]) == ("pending", 0, None), task


def test_a_task_waiting_for_a_portal_without_a_profile_is_sent_as_the_probe(
    rt, client, account, browsers, dns: HangingDns
):
    # given a task on a portal registered without a profile (PUT /portals alone), whose DNS
    # hung: it waits for the portal
    task_id = _hanging_portal_task(client, account)
    assert runner.run_task(rt, task_id, browsers=browsers) is None
    assert _task(client, account, task_id)["status"] == "waiting_for_portal"

    # when the outage's probe is due (the portal may be back)
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE portal_outages SET next_probe_at = now() - interval '1 second'"
            " WHERE account_id = %s",
            (account.id,),
        )
        probes = outages.due_probes(conn)

    # then the waiting task is the probe, sent again: not left waiting, with no outage to
    # wake it, until PORTAL_OUTAGE_WAIT_S fails it as a portal error
    assert probes == [task_id]
    task = _task(client, account, task_id)
    assert task["status"] == "pending"
    assert task["profile"] is None, "the portal has no profile"
