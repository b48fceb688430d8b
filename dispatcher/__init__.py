"""The webhook dispatcher: a Celery worker on queue ``webhooks`` that delivers signed messages."""
