"""The dispatcher's Celery task. Its argument is a message id; the state lives in Postgres."""

from __future__ import annotations

import os

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from dispatcher.delivery import deliver_message
from shared import logs, metrics
from shared.celery import DELIVER_WEBHOOK
from shared.runtime import process_runtime
from shared.settings import load_settings


@shared_task(name=DELIVER_WEBHOOK)
def deliver_webhook(message_id: int) -> None:
    with logs.bound(message_id=int(message_id)):
        deliver_message(process_runtime(), int(message_id))


@worker_ready.connect
def _ready(**_: object) -> None:
    metrics.WORKER_PROCESSES.labels("webhooks").set(1)
    metrics.serve_metrics_port(load_settings())


@worker_shutdown.connect
def _gone(**_: object) -> None:
    metrics.mark_process_dead(os.getpid(), load_settings().prometheus_multiproc_dir)
