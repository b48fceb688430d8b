"""The dispatcher's Celery task. Its argument is a message id; the state lives in Postgres."""

from __future__ import annotations

from celery import shared_task

from dispatcher.delivery import deliver_message
from shared.celery import DELIVER_WEBHOOK
from shared.runtime import process_runtime


@shared_task(name=DELIVER_WEBHOOK)
def deliver_webhook(message_id: int) -> None:
    deliver_message(process_runtime(), int(message_id))
