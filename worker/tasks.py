"""Celery entry points of the agent queue. Arguments are ids; the work is in worker.runner."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from shared.celery import RUN_TASK
from shared.runtime import process_runtime
from shared.settings import load_settings
from worker import runner, workspace
from worker.browser import BrowserPool, new_driver

_browsers: BrowserPool | None = None


def browser_pool() -> BrowserPool:
    """This process's browser, kept between tasks of one account."""
    global _browsers
    if _browsers is None:
        settings = process_runtime().settings
        _browsers = BrowserPool(
            lambda: new_driver(
                chromium_path=settings.chromium_path,
                chromedriver_path=settings.chromedriver_path,
                remote_url=settings.selenium_remote_url,
                headless=settings.headless,
                workspace_dir=settings.workspace_dir,
                egress_bind_host=settings.egress_proxy_bind_host,
                egress_host=settings.egress_proxy_host,
            ),
            max_tasks=settings.browser_max_tasks,
        )
    return _browsers


@shared_task(name=RUN_TASK)
def run_task(task_id: int) -> None:
    runner.run_task(process_runtime(), task_id, browsers=browser_pool())


@worker_init.connect
@worker_process_init.connect
def _sweep_leftovers(**_: object) -> None:
    """Kill the browsers and delete the folders that dead workers left behind (a crash, a
    SIGKILL, a lost machine), before this process starts browsers of its own."""
    # Settings only: the sweep must not wait for the database or the broker.
    workspace.sweep(load_settings().workspace_dir)


@worker_process_shutdown.connect
def _close_browser(**_: object) -> None:
    if _browsers is not None:
        _browsers.close()
