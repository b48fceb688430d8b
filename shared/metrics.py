"""Every Prometheus metric Understudy exports, and how /metrics gathers them.

Counters and histograms are written by the process where the thing happens (the API, an agent
worker, the dispatcher, the scheduler). Under gunicorn and Celery there are many processes, so
prometheus-client runs in multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set, each process
writes its values to files in that folder, and the API's /metrics adds them up. Gauges of the
state of the world (queue lengths, open breakers, tasks per status) are read at scrape time
instead, each source within ``METRICS_SOURCE_TIMEOUT_S``, so a scrape never hangs on a service
that is down: a source that does not answer is left out and ``understudy_metrics_source_up``
says so.

Label values are bounded: task types an account defines itself are counted as ``custom``.
"""

from __future__ import annotations

import errno
import glob
import hmac
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


def _prepare_folder() -> None:
    # prometheus-client picks multiprocess mode from the environment when it is imported and
    # writes to the folder from the first metric on: the folder must exist before then.
    from shared.settings import load_settings

    folder = load_settings().prometheus_multiproc_dir
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)


_prepare_folder()

# --- Written where it happens ------------------------------------------------------------------

TASKS_CREATED = Counter(
    "understudy_tasks_created_total", "Tasks created through the API.", ["type"]
)
IDEMPOTENT_REPLAYS = Counter(
    "understudy_idempotent_replays_total",
    "API calls answered with the stored answer of their Idempotency-Key: sent again by a"
    " client that lost the first answer.",
    ["call"],
)
TASKS_FINISHED = Counter(
    "understudy_tasks_finished_total",
    "Tasks that reached a final status (by whichever process ended them).",
    ["type", "status"],
)
TASK_DURATION = Histogram(
    "understudy_task_duration_seconds",
    "One worker's run of a task, from its claim to its final status.",
    ["type", "status"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800),
)
TASK_WAIT = Histogram(
    "understudy_task_wait_seconds",
    "How long a task waited from its creation to its first claim by a worker.",
    ["type"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
STEP_DURATION = Histogram(
    "understudy_step_duration_seconds",
    "One SOP step, by its kind (login, fill, click, ...) and how it ended.",
    ["kind", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
TASKS_PURGED = Counter(
    "understudy_tasks_purged_total",
    "Ended tasks deleted with everything they held, past their account's retention_days.",
)
WEBHOOK_ATTEMPTS = Counter(
    "understudy_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, http_status, redirect, timeout, ...).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "understudy_webhook_attempt_duration_seconds",
    "How long one webhook attempt took, until its answer or its error.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
# "livesum": the sum over living processes; a dead process's value goes with it.
BROWSERS = Gauge(
    "understudy_browsers",
    "Browsers open in the agent workers' pools.",
    multiprocess_mode="livesum",
)
TASK_BROWSERS = Counter(
    "understudy_task_browsers_total",
    "The browser each task run got: reused (the account's own, still signed in), spare (a"
    " fresh one started ahead) or started (a fresh one it waited for).",
    ["browser"],
)
NAME_LOOKUPS = Gauge(
    "understudy_name_lookups",
    "Name lookups running in the dispatcher's and the API's threads (shared.lookup), those"
    " their caller gave up on included.",
    multiprocess_mode="livesum",
)
NAME_LOOKUPS_REFUSED = Counter(
    "understudy_name_lookups_refused_total",
    "Name lookups not started: every lookup thread of the process was taken (LOOKUP_THREADS).",
)
WORKER_PROCESSES = Gauge(
    "understudy_worker_processes",
    "Celery processes ready to take work, by queue.",
    ["queue"],
    multiprocess_mode="livesum",
)
# "max": a dead scheduler's last value stays, so its age grows and the alert on it fires.
SCHEDULER_LAST_TICK = Gauge(
    "understudy_scheduler_last_tick_seconds",
    "When the scheduler last finished a tick (Unix time): nothing else sends webhook retries,"
    " recovers leases or re-sends lost task messages.",
    multiprocess_mode="max",
)

# --- Read at scrape time (names here, values from shared.tasks, shared.webhooks, Redis) --------

QUEUE_DEPTH = "understudy_queue_depth"
TASKS_CURRENT = "understudy_tasks_current"
OLDEST_QUEUED = "understudy_oldest_queued_task_age_seconds"
BREAKERS_OPEN = "understudy_webhook_endpoints_breaker_open"
WEBHOOKS_DUE = "understudy_webhook_messages_pending"
PORTALS_DOWN = "understudy_portal_outages"
OLDEST_OUTAGE = "understudy_portal_outage_oldest_seconds"
SOURCE_UP = "understudy_metrics_source_up"

SCRAPE_TIME = {
    QUEUE_DEPTH: "Messages waiting in a Celery queue in Redis (agent, webhooks).",
    TASKS_CURRENT: "Tasks not yet final, by status.",
    OLDEST_QUEUED: "Age of the oldest task that is waiting for a worker (0 if none).",
    BREAKERS_OPEN: "Webhook endpoints whose circuit breaker is open now.",
    WEBHOOKS_DUE: "Webhook messages not yet delivered nor given up.",
    PORTALS_DOWN: "Accounts' portals whose tasks wait for them (open outages), by cause: down,"
    " or signed_in_elsewhere (the portal refuses the sign-in while the user is signed in"
    " elsewhere).",
    OLDEST_OUTAGE: "Seconds since the oldest open portal outage of the cause began (0 if none).",
    SOURCE_UP: "1 if the source (postgres, redis) answered this scrape in time, else 0.",
}

QUEUES = ("agent", "webhooks")


def names() -> set[str]:
    """Every metric name /metrics can show (histograms and counters with their suffixes)."""
    found = set(SCRAPE_TIME)
    counters = (
        TASKS_CREATED, TASKS_FINISHED, TASKS_PURGED, WEBHOOK_ATTEMPTS, TASK_BROWSERS,
        NAME_LOOKUPS_REFUSED, IDEMPOTENT_REPLAYS,
    )  # fmt: skip
    for counter in counters:
        found.add(counter._name + "_total")
    for histogram in (TASK_DURATION, TASK_WAIT, STEP_DURATION, WEBHOOK_LATENCY):
        found |= {histogram._name + suffix for suffix in ("_bucket", "_sum", "_count")}
    found |= {BROWSERS._name, WORKER_PROCESSES._name, NAME_LOOKUPS._name, SCHEDULER_LAST_TICK._name}
    return found


# --- Helpers for the places that count ---------------------------------------------------------


def type_label(task_type: str) -> str:
    """A built-in type's name, or ``custom``: accounts name their own types, without bound."""
    from shared.sop.task_types import TASK_TYPES

    return task_type if task_type in TASK_TYPES else "custom"


_KIND = re.compile(r"[a-z_]{1,32}")


def step_kind_label(kind: str) -> str:
    return kind if _KIND.fullmatch(kind) else "other"


# --- /metrics ----------------------------------------------------------------------------------


def authorized(settings: Settings, authorization: str | None) -> bool:
    """Whether a scrape may see /metrics: always, unless ``METRICS_TOKEN`` asks for a bearer."""
    if not settings.metrics_token:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.metrics_token.encode()
    )


def render(rt: Runtime) -> tuple[bytes, str]:
    """The text of /metrics: every process's metrics, then the scrape-time gauges."""
    written = written_registry(rt.settings)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(ScrapeTimeCollector(rt))
    return generate_latest(written) + generate_latest(scraped), CONTENT_TYPE_LATEST


def written_registry(settings: Settings) -> CollectorRegistry:
    """The metrics the processes wrote: those of every process of this host sharing
    ``PROMETHEUS_MULTIPROC_DIR``, or, without one, this process's own."""
    folder = settings.prometheus_multiproc_dir
    if folder is None:
        return REGISTRY  # one process: its own memory
    sweep_dead_processes(folder)
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return registry


_PID = re.compile(r"_(\d+)\.db$")


def sweep_dead_processes(folder: Path) -> None:
    """Drop the live gauges of processes that are gone (killed without a goodbye: SIGKILL, an
    OOM kill), so ``understudy_browsers`` and ``understudy_worker_processes`` count the living.

    The folder is shared only by processes of one host (one pid namespace), so a pid that does
    not exist here is dead.
    """
    for path in glob.glob(str(folder / "gauge_live*_*.db")):
        match = _PID.search(path)
        if match and not _alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_process_dead(pid: int, folder: Path | None) -> None:
    """A process of this host ended (gunicorn's ``child_exit``, a Celery child's shutdown)."""
    if folder is not None:
        multiprocess.mark_process_dead(pid, str(folder))


class ScrapeTimeCollector(Collector):
    """The gauges read when /metrics is scraped, each source within its bound."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        sources: dict[str, Callable[[], list[Metric]]] = {
            "postgres": self._postgres,
            "redis": self._redis,
        }
        timeout_s = self.rt.settings.metrics_source_timeout_s
        pool = ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="metrics")
        futures = {name: pool.submit(read) for name, read in sources.items()}
        wait(futures.values(), timeout=timeout_s)
        pool.shutdown(wait=False, cancel_futures=True)  # a hung source must not hold the scrape
        up = GaugeMetricFamily(SOURCE_UP, SCRAPE_TIME[SOURCE_UP], labels=["source"])
        for name, future in futures.items():
            ok = future.done() and future.exception() is None
            up.add_metric([name], 1.0 if ok else 0.0)
            if ok:
                yield from future.result()
            elif future.done():
                log.warning(
                    "metrics: %s did not answer (%s)", name, type(future.exception()).__name__
                )
            else:
                log.warning("metrics: %s did not answer within %g s", name, timeout_s)
        yield up

    def _postgres(self) -> list[Metric]:
        from shared.outages import outage_state
        from shared.tasks import queue_state
        from shared.webhooks import delivery_state

        timeout_s = self.rt.settings.metrics_source_timeout_s
        with self.rt.pool.connection(timeout=timeout_s) as conn, conn.transaction():
            conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            by_status, oldest_s = queue_state(conn)
            open_breakers, pending = delivery_state(conn)
            outages = outage_state(conn)
        current = GaugeMetricFamily(TASKS_CURRENT, SCRAPE_TIME[TASKS_CURRENT], labels=["status"])
        for status, count in sorted(by_status.items()):
            current.add_metric([status], count)
        down = GaugeMetricFamily(PORTALS_DOWN, SCRAPE_TIME[PORTALS_DOWN], labels=["cause"])
        oldest = GaugeMetricFamily(OLDEST_OUTAGE, SCRAPE_TIME[OLDEST_OUTAGE], labels=["cause"])
        for cause, (count, age_s) in outages.items():
            down.add_metric([str(cause)], count)
            oldest.add_metric([str(cause)], age_s)
        return [
            current,
            GaugeMetricFamily(OLDEST_QUEUED, SCRAPE_TIME[OLDEST_QUEUED], value=oldest_s),
            GaugeMetricFamily(BREAKERS_OPEN, SCRAPE_TIME[BREAKERS_OPEN], value=open_breakers),
            GaugeMetricFamily(WEBHOOKS_DUE, SCRAPE_TIME[WEBHOOKS_DUE], value=pending),
            down,
            oldest,
        ]

    def _redis(self) -> list[Metric]:
        from shared.celery import queue_lengths

        depth = GaugeMetricFamily(QUEUE_DEPTH, SCRAPE_TIME[QUEUE_DEPTH], labels=["queue"])
        for queue, length in queue_lengths(self.rt.celery, QUEUES).items():
            depth.add_metric([queue], length)
        return [depth]


def serve_metrics_port(settings: Settings) -> WSGIServer | None:
    """Serve this host's metric files on ``METRICS_PORT`` at ``API_HOST`` (from a Celery main
    process or the scheduler: processes whose host has no API to serve them), behind
    ``METRICS_TOKEN`` as the API's /metrics is. The server runs in a daemon thread; None when
    no port is set, or when another process of the host serves it already (``understudy run``
    with ``METRICS_PORT`` set: the first to start serves the host's files, which hold every
    process's series)."""
    if settings.metrics_port is None:
        return None
    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    scrape = make_wsgi_app(_LazyRegistry(settings))  # type: ignore[arg-type]

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if authorized(settings, environ.get("HTTP_AUTHORIZATION")):
            return scrape(environ, start_response)
        message = "Send the METRICS_TOKEN as 'Authorization: Bearer'."
        body = json.dumps({"error": {"code": "unauthorized", "message": message, "details": None}})
        start_response(
            "401 Unauthorized",
            [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
        )
        return [body.encode()]

    try:
        server = make_server(
            settings.api_host, settings.metrics_port, guarded, ThreadingWSGIServer, _QuietHandler
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.info(
            "metrics port %s is served by another process of this host; not here",
            settings.metrics_port,
        )
        return None
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    log.info("serving metrics on port %s", settings.metrics_port)
    return server


class _QuietHandler(WSGIRequestHandler):
    """Scrapes are not logged (one every few seconds would drown the process's own lines)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


class _LazyRegistry:
    """The folder's metrics gathered afresh at each scrape (processes come and go)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterable[Metric]:
        return written_registry(self.settings).collect()

    def restricted_registry(self, names: Iterable[str]) -> Any:
        return written_registry(self.settings).restricted_registry(names)
