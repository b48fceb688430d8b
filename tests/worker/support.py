"""Helpers for the engine tests: recorders, task files, sandbox admin calls, test data."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from shared.accounts import Credentials
from shared.inputs import parse_task_data
from shared.runtime import Runtime
from shared.settings import Settings
from shared.sop.library import builtin_sop
from worker import runner
from worker.agent.interpreter import Outcome, run_sop
from worker.agent.page import Page, SessionSigns
from worker.browser import BrowserPool, egress_of, new_driver
from worker.egress import Boundary, Origin

MFA_USER = Credentials("provider@sandbox", "sandbox-pass-1", "JBSWY3DPEHPK3PXP")
PLAIN_USER = Credentials("nomfa@sandbox", "sandbox-pass-2", None)
SECRETS = ("sandbox-pass-1", "sandbox-pass-2", "JBSWY3DPEHPK3PXP")

# Quick, deterministic portal: short spinner and slow page, no random modal.
FAST_FAULTS: dict[str, Any] = {"spinner_s": 0.2, "slow_page_s": 0.2, "modal": "never"}

JANE = "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"


def sandbox_runtime(runtime: Runtime, sandbox_url: str, **settings: Any) -> Runtime:
    """The test runtime pointed at this test's sandbox portal, with quick hurdles."""
    requests.post(f"{sandbox_url}/__sandbox/faults", json=FAST_FAULTS, timeout=5).raise_for_status()
    return dataclasses.replace(
        runtime, settings=runtime.settings.replace(sandbox_url=sandbox_url, **settings)
    )


def browser_pool(settings: Settings, **driver_options: Any) -> BrowserPool:
    """A worker's browser pool on the test machine's Chromium."""
    return BrowserPool(
        lambda: new_driver(
            chromium_path=settings.chromium_path,
            chromedriver_path=settings.chromedriver_path,
            **driver_options,
        )
    )


@dataclass
class RecordedStep:
    name: str
    status: str
    message: str
    screenshot: bytes | None
    duration_ms: int


@dataclass
class ListRecorder:
    """A recorder that keeps everything, for assertions."""

    steps: list[RecordedStep] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    # Test hooks, to flip portal faults at a precise moment of the run.
    on_step: Callable[[str], None] | None = None
    on_checkpoint: Callable[[str], None] | None = None

    def step(
        self,
        name: str,
        *,
        started_at: datetime,
        duration_ms: int,
        status: str,
        message: str,
        screenshot: bytes | None,
        kind: str = "other",
    ) -> None:
        self.steps.append(RecordedStep(name, status, message, screenshot, duration_ms))
        if self.on_step:
            self.on_step(name)

    def checkpoint(self, step_name: str) -> None:
        self.checkpoints.append(step_name)
        if self.on_checkpoint:
            self.on_checkpoint(step_name)

    def named(self, fragment: str) -> list[RecordedStep]:
        return [s for s in self.steps if fragment in s.name]

    def text(self) -> str:
        return "\n".join(f"{s.status} {s.name}: {s.message}" for s in self.steps)


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: str


def stats(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/__sandbox/stats", timeout=5).json()


def submissions(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/__sandbox/submissions", timeout=5).json()


def set_faults(base_url: str, **faults: Any) -> None:
    requests.post(f"{base_url}/__sandbox/faults", json=faults, timeout=5).raise_for_status()


def run_builtin(driver, task_type: str, data: str, base_url: str, **kwargs: Any) -> Outcome:
    """Run a built-in SOP on text task data, as the worker does."""
    kwargs.setdefault("credentials", MFA_USER)
    return run_sop(
        driver, builtin_sop(task_type), parse_task_data(data), base_url=base_url, **kwargs
    )


def page_on_html(driver, html: str, render: Callable[[str], str] = str) -> Page:
    """A bare :class:`Page` (no profile, no error patterns) on ``html``, opened as a data: URL;
    ``render`` fills in the locators' templates."""
    driver.get("data:text/html;base64," + base64.b64encode(html.encode()).decode())
    return bare_page(driver, "http://portal.test", render)


def bare_page(driver, base_url: str, render: Callable[[str], str] = str) -> Page:
    """A :class:`Page` with no profile and no error patterns whose portal is ``base_url``; the
    browser's egress proxy (if it has one) lets it out to that origin."""
    return Page(
        driver=driver,
        boundary=Boundary([Origin.of(base_url, allow_private=True)], egress_of(driver)),
        base_url=base_url,
        portal_errors=(),
        dismiss=(),
        session=SessionSigns(None),
        render=render,
    )


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler of a test's loopback server: no line per request on stderr."""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def loopback_server(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port, in a thread, until the block ends; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_within(rt: Runtime, task_id: int, browsers: BrowserPool, limit_s: float, what: str) -> None:
    """Run the task as an agent worker does, on a thread of its own: it must end within
    ``limit_s`` (else the worker hung on ``what``) and raise nothing."""
    done: list[object] = []

    def work() -> None:
        try:
            done.append(runner.run_task(rt, task_id, browsers=browsers))
        except BaseException as exc:  # shown by the assertion below
            done.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), f"the worker hung on {what}"
    assert not isinstance(done[0], BaseException), repr(done[0])


def on_local_portal(client: Any, account: Any, portal_url: str, *, password: str, sop: str) -> Any:
    """``account`` with its portal ``acme`` at ``portal_url`` (a test's own pages), a login for
    it, and ``sop`` as its check_eligibility SOP, all set through the API."""
    headers = account.headers
    response = client.put("/portals/acme", json={"base_url": portal_url}, headers=headers)
    assert response.status_code in (200, 201), response.get_json()
    response = client.put(
        "/credentials/acme", json={"username": "u", "password": password}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    response = client.put(
        "/sops/check_eligibility", data=sop, headers={**headers, "Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.get_json()
    return account
