from shared.celery import celery_from_env

app = celery_from_env(["worker.tasks"], service="worker")
