"""The one Celery app factory every process uses.

Queues: ``agent`` (browser work, prefork, one Chromium per process) and ``webhooks`` (deliveries,
I/O bound, thread pool). Messages carry ids only; Postgres holds every state, so a lost message
costs a delay, never a task: the scheduler re-enqueues what nobody claimed.
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings

RUN_TASK = "understudy.run_task"
DELIVER_WEBHOOK = "understudy.deliver_webhook"


def create_celery(settings: Settings, broker_url: str) -> Celery:
    app = Celery("understudy", broker=broker_url)
    app.conf.update(
        task_routes={RUN_TASK: {"queue": "agent"}, DELIVER_WEBHOOK: {"queue": "webhooks"}},
        task_default_queue="agent",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Acknowledge after the work so a killed worker's message is redelivered; the claim in
        # Postgres makes the second delivery a no-op when the first one did finish.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Nothing waits in Redis for long: "later" lives in Postgres. A short visibility timeout
        # only bounds how long an unacknowledged message from a dead worker lingers.
        broker_transport_options={
            "visibility_timeout": max(300, int(settings.task_time_limit_s) + 60)
        },
        task_time_limit=int(settings.task_time_limit_s) + 30,
        task_soft_time_limit=int(settings.task_time_limit_s),
    )
    return app


def celery_from_env(include: list[str]) -> Celery:
    """The app for a ``celery -A`` entry point, configured from the environment."""
    from shared import embedded
    from shared.settings import load_settings

    settings = load_settings()
    app = create_celery(settings, embedded.redis_url(settings))
    app.conf.include = include
    return app
