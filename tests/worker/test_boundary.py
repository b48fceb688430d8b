"""The agent's browser stays on its portal: hostile SOPs run as real tasks, each refused.

Every case runs through worker.runner.run_task with a real BrowserPool against the real sandbox
portal. A canary server on another loopback port counts the requests that reach it: none may.
"""

from __future__ import annotations

import socket

import pytest
import requests
from selenium.common.exceptions import WebDriverException

from tests.worker.support import QuietHandler, browser_pool, loopback_server, sandbox_runtime
from worker import runner
from worker.browser import egress_of, new_driver, quit_quietly
from worker.egress import EgressProxy, Origin
from worker.workspace import task_workspace

pytestmark = pytest.mark.browser

HOSTILE_SOP = """
task_type: check_eligibility
title: Go where I say
portal: sandbox
inputs:
  - name: target
    format: text
    required: true
steps:
  - goto: "{{ target }}"
  - wait_for: {text: "Attempt finished"}
    timeout_s: 5
outcomes:
  - status: completed
    notes: "went to {{ target }}"
"""

LEFT = "tried to leave its portal"


class Canary:
    """A server on another loopback port that only counts what reaches it."""

    def __init__(self, url: str, hits: list[str]) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.hits = hits


@pytest.fixture(scope="module")
def canary():
    hits: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            self.reply(200, b"canary secret")

    with loopback_server(Handler) as url:
        yield Canary(url, hits)


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def browsers(settings, workspace_dir):
    pool = browser_pool(settings, workspace_dir=workspace_dir, page_load_timeout_s=10)
    yield pool
    pool.close()


@pytest.fixture
def rt(runtime, sandbox_url, workspace_dir):
    return sandbox_runtime(
        runtime, sandbox_url, workspace_dir=workspace_dir, portal_retry_attempts=1
    )


@pytest.fixture
def hostile_account(client, account):
    response = client.put(
        "/sops/check_eligibility",
        data=HOSTILE_SOP,
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code in (200, 201), response.get_json()
    return account


def _run(rt, client, account, browsers, target: str) -> dict:
    response = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": {"target": target}},
        headers=account.headers,
    )
    assert response.status_code == 200, response.get_json()
    task_id = response.get_json()["id"]
    runner.run_task(rt, task_id, browsers=browsers)
    with rt.pool.connection() as conn:
        task = conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
        steps = conn.execute(
            "SELECT name, status, message FROM trajectory_steps WHERE task_id = %s", (task_id,)
        ).fetchall()
    return {**task, "trajectory": "\n".join(f"{s['name']}: {s['message']}" for s in steps)}


def _hostile_targets(canary: Canary, sandbox_url: str) -> dict[str, str]:
    secret = f"{canary.url}/secret"
    return {
        "goto a file: URL": "file:///etc/passwd",
        "goto loopback": secret,
        "goto another origin": f"http://localhost:{canary.port}/other-origin",
        "goto javascript:": "javascript:fetch('" + secret + "')",
        "goto data:": "data:text/html,<iframe src='" + secret + "'></iframe>",
        "a redirect to another origin": f"/__sandbox/hostile/redirect?url={secret}",
        "a frame to another origin": f"/__sandbox/hostile/frame?url={secret}",
        "fetch to another origin": f"/__sandbox/hostile/fetch?url={secret}",
        "window.open to another origin": f"/__sandbox/hostile/open?url={secret}",
    }


CASES = [
    "goto a file: URL",
    "goto loopback",
    "goto another origin",
    "goto javascript:",
    "goto data:",
    "a redirect to another origin",
    "a frame to another origin",
    "fetch to another origin",
    "window.open to another origin",
]


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_sop_is_stopped_and_nothing_reaches_another_origin(
    case, rt, client, hostile_account, browsers, canary, sandbox_url
):
    canary.hits.clear()
    target = _hostile_targets(canary, sandbox_url)[case]

    task = _run(rt, client, hostile_account, browsers, target)

    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert LEFT in task["notes"]
    assert canary.hits == []
    assert "root:x:0" not in task["notes"] + task["trajectory"]
    assert "canary secret" not in task["notes"] + task["trajectory"]


def test_the_same_hostile_page_aimed_at_the_portal_itself_completes(
    rt, client, hostile_account, browsers, sandbox_url
):
    # The control: the pages and the checks fail a task only for leaving the portal.
    task = _run(rt, client, hostile_account, browsers, "/__sandbox/hostile/frame?url=/login")
    assert task["status"] == "completed", (task["notes"], task["trajectory"])


def test_another_tasks_files_cannot_be_read(rt, client, hostile_account, browsers, canary):
    # Given another task's private folder, with its file, under the same workspace root
    with task_workspace(rt.settings.workspace_dir, 424242) as other:
        (other / "files").mkdir()
        secret_file = other / "files" / "claim.pdf"
        secret_file.write_text("another clinic's patient record")
        assert oct(other.stat().st_mode & 0o777) == "0o700"

        # When a hostile SOP opens it, or lists the folders of the workspace
        by_file = _run(rt, client, hostile_account, browsers, secret_file.as_uri())
        by_listing = _run(rt, client, hostile_account, browsers, rt.settings.workspace_dir.as_uri())

    for task in (by_file, by_listing):
        assert task["status"] == "failed" and LEFT in task["notes"]
        assert "patient record" not in task["notes"] + task["trajectory"]


def test_file_urls_are_blocked_in_the_browser_itself(settings, workspace_dir):
    # Even a caller that skips the engine's goto guard cannot read a local file.
    driver = new_driver(
        chromium_path=settings.chromium_path,
        chromedriver_path=settings.chromedriver_path,
        workspace_dir=workspace_dir,
        page_load_timeout_s=3,
    )
    try:
        with pytest.raises(WebDriverException):  # held, never answered: a timeout
            driver.get("file:///etc/passwd")
        assert "root:x:0" not in driver.page_source
    finally:
        quit_quietly(driver)


def test_the_browser_network_itself_refuses_other_loopback_ports(
    settings, workspace_dir, sandbox_url, canary
):
    # Without the engine's guards: a navigation, a frame and a fetch straight in the browser.
    canary.hits.clear()
    driver = new_driver(
        chromium_path=settings.chromium_path,
        chromedriver_path=settings.chromedriver_path,
        workspace_dir=workspace_dir,
        page_load_timeout_s=10,
    )
    try:
        egress = egress_of(driver)
        egress.allow([Origin.of(sandbox_url, allow_private=True)])
        driver.get(f"{sandbox_url}/__sandbox/hostile/fetch?url={canary.url}/by-fetch")
        driver.get(f"{sandbox_url}/__sandbox/hostile/frame?url={canary.url}/by-frame")
        driver.get(f"{canary.url}/by-navigation")
        refused = {r.url for r in egress.refusals()}
    finally:
        quit_quietly(driver)
    assert canary.hits == []
    assert f"{canary.url}/by-navigation" in refused
    assert f"{canary.url}/by-frame" in refused


def test_the_proxy_checks_every_resolved_address_and_connects_to_the_checked_one(canary):
    # A name that resolves to a public and a loopback address (a rebinding setup) is refused
    # as a whole; a name allowed to be private is reached at the address that was checked.
    answers = {"rebind.test": ["93.184.215.14", "127.0.0.1"], "pinned.test": ["127.0.0.1"]}
    proxy = EgressProxy(resolver=lambda host, port: answers[host])
    proxy.allow(
        [
            Origin.of(f"http://rebind.test:{canary.port}"),
            Origin.of(f"http://pinned.test:{canary.port}", allow_private=True),
        ]
    )
    via = {"http": f"http://{proxy.address}"}
    canary.hits.clear()
    try:
        refused = requests.get(f"http://rebind.test:{canary.port}/rebind", proxies=via, timeout=5)
        pinned = requests.get(f"http://pinned.test:{canary.port}/pinned", proxies=via, timeout=5)
        other = requests.get(f"http://pinned.test:{canary.port + 1}/x", proxies=via, timeout=5)
    finally:
        proxy.close()
    assert refused.status_code == 403 and "loopback" in refused.text
    assert pinned.status_code == 200 and pinned.text == "canary secret"
    assert other.status_code == 403
    assert canary.hits == ["/pinned"]


def test_an_origin_the_account_declared_is_reachable(rt, client, account, browsers, canary):
    # Given a portal (served by the sandbox) that declares the canary's origin as its own
    headers = account.headers
    client.put(
        "/portals/acme",
        json={"base_url": rt.settings.sandbox_url, "allowed_origins": [canary.url]},
        headers=headers,
    )
    client.put(
        "/credentials/acme",
        json={"username": "acme-user", "password": "acme-pass-42"},
        headers=headers,
    )
    sop = HOSTILE_SOP.replace("portal: sandbox", "portal: acme")
    response = client.put(
        "/sops/check_eligibility", data=sop, headers={**headers, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.get_json()
    canary.hits.clear()

    # When a page frames it, the frame loads; a page that frames another port is still stopped
    allowed = _run(rt, client, account, browsers, f"/__sandbox/hostile/frame?url={canary.url}/ok")
    other = f"http://127.0.0.1:{canary.port + 1}/no"
    refused = _run(rt, client, account, browsers, f"/__sandbox/hostile/frame?url={other}")

    assert allowed["status"] == "completed", allowed["notes"]
    assert canary.hits == ["/ok"]
    assert refused["status"] == "failed" and LEFT in refused["notes"]


def test_tunnels_go_only_to_an_allowed_host_and_port(canary):
    proxy = EgressProxy(resolver=lambda host, port: ["127.0.0.1"])
    proxy.allow([Origin.of(f"https://portal.test:{canary.port}", allow_private=True)])
    canary.hits.clear()

    def connect(target: str, then: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            answer = sock.recv(4096)
            if answer.startswith(b"HTTP/1.1 200") and then:
                sock.sendall(then)
                answer += b"".join(iter(lambda: sock.recv(4096), b""))
            return answer

    try:
        # the allowed host and port: a tunnel (here carrying plain http, as a test can)
        through = connect(
            f"portal.test:{canary.port}",
            b"GET /tunnelled HTTP/1.1\r\nHost: portal.test\r\nConnection: close\r\n\r\n",
        )
        other_port = connect(f"portal.test:{canary.port + 1}")
        other_host = connect(f"127.0.0.1:{canary.port}")
        refusals = proxy.refusals()
    finally:
        proxy.close()
    assert through.startswith(b"HTTP/1.1 200") and b"canary secret" in through
    assert other_port.startswith(b"HTTP/1.1 403") and other_host.startswith(b"HTTP/1.1 403")
    assert canary.hits == ["/tunnelled"]
    assert [r.page for r in refusals] == [False, False]  # a tunnel says nothing of its page


def test_a_request_for_an_address_that_cannot_be_split_is_a_400(canary):
    # given the proxy a browser's plain http goes through
    proxy = EgressProxy(resolver=lambda host, port: ["127.0.0.1"])
    proxy.allow([Origin.of(f"http://portal.test:{canary.port}", allow_private=True)])
    try:
        # when a request names an unclosed IPv6 host, then one the portal's origin
        answers = []
        for target in ("http://[::1/x", f"http://portal.test:{canary.port}/after"):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: portal.test\r\n\r\n".encode())
                answers.append(b"".join(iter(lambda s=sock: s.recv(4096), b"")))
    finally:
        proxy.close()
    # then the first is answered 400 (the connection was dropped unanswered), and the proxy
    # goes on serving
    assert answers[0].startswith(b"HTTP/1.1 400"), answers[0]
    assert answers[1].split(b" ")[1] == b"200" and b"canary secret" in answers[1]
