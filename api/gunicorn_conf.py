"""gunicorn's settings for the `web` process, read from the same settings object as the app.

`gunicorn -c python:api.gunicorn_conf 'api:create_app()'` (the Procfile's `web:` line). Every
gunicorn option the API relies on lives here, so the Procfile and the Kubernetes manifests
cannot drift apart.

Workers are threaded (gthread): a request waiting on the database holds a thread, not the
process. The worker class (``api.gunicorn_worker.ApiWorker``) answers a liveness probe
(``GET /healthz``) on its main loop from memory, before it would queue for a thread, so a
database outage that keeps every thread busy never makes a healthy API look dead; it answers
gunicorn's own errors in the API's JSON shape, stops any request still running after
API_REQUEST_TIMEOUT_S, and reads each request on its main loop before a thread takes it, so a
slow client holds no thread: one that has not arrived (headers and body) within
API_READ_TIMEOUT_S is answered 408 there.
"""

from __future__ import annotations

import logging

from shared import metrics
from shared.logs import logging_config
from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "api.gunicorn_worker.ApiWorker"
threads = _settings.api_threads
# The arbiter's heartbeat timeout: a worker whose main loop is stuck this long is restarted.
# Requests are bounded by the worker itself, so this only catches a worker that hangs whole.
timeout = int(_settings.api_request_timeout_s) + 30
# What gunicorn refuses before the app runs: 414, then 431 (README "Limits").
limit_request_line = _settings.max_url_bytes
limit_request_field_size = _settings.max_header_bytes
limit_request_fields = _settings.max_headers
# Our logging setup, in the arbiter and its workers; each request is logged by the app with its
# request id (api.request_log), so gunicorn's own access log is off.
logconfig_dict = logging_config(_settings, "api")
# Python's warnings become lines of the same handler, as shared.logs.configure_logging makes
# them in the other processes (the workers inherit this from the arbiter).
logging.captureWarnings(True)
accesslog = None
logger_class = "api.gunicorn_worker.ApiLogger"


def child_exit(server, worker) -> None:
    """A worker is gone: its live gauges must no longer count (prometheus-client multiprocess)."""
    metrics.mark_process_dead(worker.pid, _settings.prometheus_multiproc_dir)
