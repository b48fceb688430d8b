"""A portal's pages turned hostile or broken: scripts that never end, dialogs, a renderer that
dies, pages that never finish, pop-ups and endless redirects. Each runs as a real task through
worker.runner.run_task on a real browser pool; each must end with a clear status (or be
retried within its bounds), never hang the worker, and leave the next task on that worker
working."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest

from tests.worker.support import QuietHandler, browser_pool, loopback_server, sandbox_runtime
from worker import runner

pytestmark = pytest.mark.faults

# Pages by name; "/done" is the well-behaved page the next task opens.
DONE = b"<title>Done</title><h1>All done</h1>"
GO = "<button id=go onclick='{}'>Go</button>"
PAGES: dict[str, bytes] = {
    "/done": DONE,
    "/loop-on-load": b"<h1>All done</h1><script>while(true){}</script>",
    "/loop-on-click": GO.format("while(true){}").encode(),
}

SOP = """
task_type: check_eligibility
title: Hostile page
portal: acme
inputs:
  - name: target
    format: text
    required: true
  - name: click
    format: text
settings:
  step_timeout_s: 5
steps:
  - goto: "{{ target }}"
  - when: click == 'yes'
    click: {css: "#go"}
  - wait_for: {text: "All done"}
outcomes:
  - status: completed
    notes: "done"
"""

# A hang guard only: far beyond what any case needs on a busy machine.
HANG_S = 300


class Portal(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        body = PAGES.get(path)
        if body is None:
            self.reply(404, b"<h1>Not found</h1>")
        else:
            self.reply(200, body, {"Content-Type": "text/html"})


@pytest.fixture(scope="module")
def portal_url():
    with loopback_server(Portal) as url:
        yield url


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture
def browsers(settings, workspace_dir):
    pool = browser_pool(settings, workspace_dir=workspace_dir, page_load_timeout_s=10)
    yield pool
    pool.close()


@pytest.fixture
def rt(runtime, sandbox_url, workspace_dir):
    return sandbox_runtime(
        runtime,
        sandbox_url,
        workspace_dir=workspace_dir,
        portal_retry_attempts=2,
        portal_allow_private=True,
        portal_outage_wait_s=0,
    )


@pytest.fixture
def acme(client, account, portal_url):
    headers = account.headers
    response = client.put("/portals/acme", json={"base_url": portal_url}, headers=headers)
    assert response.status_code in (200, 201), response.get_json()
    response = client.put(
        "/credentials/acme", json={"username": "u", "password": "p-4242"}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    response = client.put(
        "/sops/check_eligibility",
        data=SOP,
        headers={**headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code in (200, 201), response.get_json()
    return account


def _run(rt, client, account, browsers, target: str, *, click: bool = False) -> dict:
    data = {"target": target, "click": "yes" if click else "no"}
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    task_id = response.get_json()["id"]
    done: list[object] = []

    def work() -> None:
        try:
            done.append(runner.run_task(rt, task_id, browsers=browsers))
        except BaseException as exc:  # shown by the assertion below
            done.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert not worker.is_alive(), f"the worker hung on {target}"
    assert not isinstance(done[0], BaseException), repr(done[0])
    with rt.pool.connection() as conn:
        task = conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
        steps = conn.execute(
            "SELECT name, status, message FROM trajectory_steps WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()
    trajectory = "\n".join(f"{s['status']} {s['name']}: {s['message']}" for s in steps)
    return {**task, "trajectory": trajectory}


def _next_task_works(rt, client, account, browsers) -> None:
    task = _run(rt, client, account, browsers, "/done")
    assert task["status"] == "completed", (task["notes"], task["trajectory"])


@pytest.mark.parametrize(
    ("target", "click"),
    [("/loop-on-load", False), ("/loop-on-click", True)],
    ids=["on-load", "after-click"],
)
def test_a_script_that_never_ends(rt, client, acme, browsers, target, click):
    task = _run(rt, client, acme, browsers, target, click=click)
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    _next_task_works(rt, client, acme, browsers)
