"""Celery entry points of the agent queue. Arguments are ids; the work is in worker.runner."""

from __future__ import annotations

import logging
import os

from celery import shared_task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared import metrics
from shared.celery import RUN_TASK
from shared.runtime import process_runtime
from shared.settings import Settings, load_settings
from shared.tasks import TaskStatus
from worker import runner, workspace
from worker.browser import BrowserPool, new_driver
from worker.errors import TaskEndedFailed

log = logging.getLogger(__name__)

_browsers: BrowserPool | None = None


def browser_pool() -> BrowserPool:
    """This process's browser, kept between tasks of one account."""
    global _browsers
    if _browsers is None:
        _browsers = new_pool(process_runtime().settings)
    return _browsers


def new_pool(settings: Settings) -> BrowserPool:
    """A browser pool whose browsers are started as ``settings`` say."""
    return BrowserPool(
        lambda: new_driver(
            chromium_path=settings.chromium_path,
            chromedriver_path=settings.chromedriver_path,
            remote_url=settings.selenium_remote_url,
            headless=settings.headless,
            page_load_timeout_s=settings.browser_page_load_timeout_s,
            command_slack_s=settings.browser_command_slack_s,
            workspace_dir=settings.workspace_dir,
            egress_bind_host=settings.egress_proxy_bind_host,
            egress_host=settings.egress_proxy_host,
        ),
        max_tasks=settings.browser_max_tasks,
        spare=settings.browser_spare,
    )


# `throws`: a task that ended `failed` is a FAILURE in Celery, logged at INFO without a
# traceback; no autoretry is configured, and the message is acknowledged as for a success.
@shared_task(name=RUN_TASK, throws=(TaskEndedFailed,))
def run_task(task_id: int) -> str | None:
    status = runner.run_task(process_runtime(), task_id, browsers=browser_pool())
    if status == TaskStatus.FAILED:
        raise TaskEndedFailed(f"task {task_id} ended failed")
    return str(status) if status is not None else None


@worker_init.connect
@worker_process_init.connect
def _sweep_leftovers(**_: object) -> None:
    """Kill the browsers and delete the folders that dead workers left behind (a crash, a
    SIGKILL, a lost machine), before this process starts browsers of its own."""
    # Settings only: the sweep must not wait for the database or the broker.
    workspace.sweep(load_settings().workspace_dir)


@worker_process_init.connect
def _count_process(**_: object) -> None:
    metrics.WORKER_PROCESSES.labels("agent").set(1)


@worker_process_init.connect
def _start_spare_browser(**_: object) -> None:
    """A new process starts its first browser ahead of its first task (BROWSER_SPARE), after
    the sweep above: connected later, it runs later."""
    if not load_settings().browser_spare:
        return
    try:
        browser_pool().prepare()
    except Exception as exc:  # the first task then starts its browser itself
        log.warning("could not start a spare browser: %s", exc)


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    metrics.serve_metrics_port(load_settings())


@worker_process_shutdown.connect
def _close_browser(**_: object) -> None:
    if _browsers is not None:
        _browsers.close()
    metrics.mark_process_dead(os.getpid(), load_settings().prometheus_multiproc_dir)


@worker_shutdown.connect
def _forget_main_process(**_: object) -> None:
    metrics.mark_process_dead(os.getpid(), load_settings().prometheus_multiproc_dir)
