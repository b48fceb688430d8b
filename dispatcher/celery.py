from shared.celery import celery_from_env

app = celery_from_env(["dispatcher.tasks"], service="dispatcher")
