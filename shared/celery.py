"""The one Celery app factory every process uses.

Queues: ``agent`` (browser work, prefork, one Chromium per process) and ``webhooks`` (deliveries,
I/O bound, thread pool). Messages carry ids only; Postgres holds every state, so a lost message
costs a delay, never a task: the scheduler re-enqueues what nobody claimed.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
import weakref
from typing import Any

import kombu.exceptions
import orjson
import redis
from celery import Celery
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_incrementing

from shared.redis_link import ThreadConnection, is_sentinel, redis_client, sentinel_options
from shared.settings import Settings

RUN_TASK = "understudy.run_task"
DELIVER_WEBHOOK = "understudy.deliver_webhook"
# The queue each task's messages go to (a Redis list of the same name).
QUEUES = {RUN_TASK: "agent", DELIVER_WEBHOOK: "webhooks"}


def broker_transport_options(settings: Settings, broker_url: str) -> dict[str, Any]:
    # Nothing waits in Redis for long: "later" lives in Postgres. A short visibility timeout
    # only bounds how long an unacknowledged message from a dead worker lingers.
    options: dict[str, Any] = {
        "visibility_timeout": max(300, int(settings.task_time_limit_s) + 60),
        # A dead or failed-over Redis must not hang a request or a tick.
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
    }
    if is_sentinel(broker_url):
        # Every connection asks the sentinels who the master is, so a failover needs no
        # restart: the next reconnect finds the promoted replica.
        options["master_name"] = settings.redis_sentinel_master
        # The servers' password comes with REDIS_URL; the sentinels' own is set apart.
        options["sentinel_kwargs"] = {
            "socket_timeout": 1,
            "socket_connect_timeout": 1,
            **sentinel_options(settings.redis_sentinel_password),
        }
    return options


def _closed_connection_is_a_connection_error() -> None:
    """Make kombu's Redis channel, asked for a client once its connection was closed, raise the
    connection error it is, where it raised ``AttributeError`` (kombu 5.7: ``_connparams``
    reads ``connection.client``, which closing set to None).

    That happens when Redis restarts under a task whose message is not yet acknowledged (this
    app acknowledges late): the consumer closes its connection to reconnect, the channel's
    close tries to put the message back on a connection that is gone, and the AttributeError
    escaped as "Unrecoverable error", which stopped the worker, and with ``understudy run``
    every process. As a connection error it is ignored there, as a failed acknowledgement is:
    the message stays in Redis's unacknowledged set and is restored after its visibility
    timeout, and the task's state is Postgres's anyway (its lease and the scheduler's re-send).
    """
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel._connparams, "understudy_checked", False):
        return
    connparams = channel._connparams

    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return connparams(self, *args, **kwargs)

    checked.understudy_checked = True  # type: ignore[attr-defined]
    channel._connparams = checked  # type: ignore[method-assign]


def create_celery(settings: Settings, broker_url: str) -> Celery:
    _closed_connection_is_a_connection_error()
    app = Celery("understudy", broker=broker_url)
    app.conf.update(
        task_routes={name: {"queue": queue} for name, queue in QUEUES.items()},
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
        # Task events (received, started, succeeded, failed) go out without `-E`, so a monitor
        # such as Flower shows each task's true state: a task that ended `failed` is a FAILURE.
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings, broker_url),
        task_time_limit=int(settings.task_time_limit_s) + 30,
        task_soft_time_limit=int(settings.task_time_limit_s),
    )
    return app


def broker_ping(app: Celery) -> None:
    """Raise unless the broker answers (through the sentinels when REDIS_URL names them). A
    refused connection is tried once more, 0.1 s later, and then raised as what it is: kombu's
    default retries took 6 s, past readiness's bound, which then said "no answer" of a Redis
    that is down, as of one that hangs."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0.1, interval_step=0.1)
        conn.default_channel.client.ping()


def celery_from_env(include: list[str], *, service: str) -> Celery:
    """The app for a ``celery -A`` entry point, configured from the environment.

    ``service`` names the process in its log lines. Our logging setup replaces Celery's.
    """
    from celery.signals import setup_logging

    from shared import embedded
    from shared.logs import configure_logging
    from shared.settings import load_settings

    settings = load_settings()
    app = create_celery(settings, embedded.redis_url(settings))
    app.conf.include = include

    def _logging(**_: object) -> None:
        configure_logging(settings, service)

    # A receiver of setup_logging means Celery configures no logging of its own.
    setup_logging.connect(_logging, weak=False)
    return app


def queue_lengths(app: Celery, queues: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting in each queue: the length of Celery's Redis list of that name."""
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        return {queue: int(client.llen(queue)) for queue in queues}


def send_run_task(app: Celery, task_id: int) -> None:
    """Put a task's message on the agent queue: the one way every process sends it."""
    send_run_tasks(app, [task_id])


def send_run_tasks(app: Celery, task_ids: list[int]) -> None:
    """Put the tasks' messages on the agent queue in one LPUSH, the first to be taken first."""
    send_messages(app, RUN_TASK, task_ids)


_SEND_ERRORS = (kombu.exceptions.OperationalError, redis.RedisError, OSError)


def send_message(app: Celery, task_name: str, record_id: int) -> None:
    """Send ``task_name(record_id)``: :func:`send_messages` of one."""
    send_messages(app, task_name, [record_id])


def send_messages(app: Celery, task_name: str, record_ids: list[int]) -> None:
    """Send ``task_name(record_id)`` for each id: one LPUSH on the thread's own broker
    connection, in order (workers take a list's entries from the end LPUSH filled first).

    Each message is what ``app.send_task`` would send (Celery's message protocol 2, in kombu's
    Redis envelope, on the default exchange), written here because Celery's own path costs
    several times the LPUSH: this is on the path of every ``POST /tasks``. The connection is
    kept by the calling thread (:func:`_broker`), and it finds the master through the sentinels
    when REDIS_URL names them. A short retry through Celery's own connection pool covers a
    broker that blips; one that stays down raises, and the caller leaves the records for the
    scheduler.
    """
    queue = QUEUES[task_name]
    messages = [task_message(task_name, record_id, queue) for record_id in record_ids]
    try:
        _broker(app).call("LPUSH", queue, *messages)
    except redis.TimeoutError:
        raise  # no answer in time: a Redis that hangs would only make each try wait as long
    except _SEND_ERRORS:
        _lpush_again(app, queue, messages)


_BROKERS: weakref.WeakKeyDictionary[Celery, ThreadConnection] = weakref.WeakKeyDictionary()
# A send is one LPUSH, answered in microseconds: a broker silent for this long is not answering,
# and the caller (a client waiting on POST /tasks) leaves the message to the scheduler. After
# such a silence, this process does not wait on the broker again for SEND_QUIET_S.
SEND_TIMEOUT_S = 2.0
SEND_QUIET_S = 5.0


def _broker(app: Celery) -> ThreadConnection:
    """The broker that ``app`` sends to, with the same timeouts and sentinels as its pool."""
    broker = _BROKERS.get(app)
    if broker is None:
        options = app.conf.broker_transport_options
        client = redis_client(
            app.conf.broker_url,
            options.get("master_name", ""),
            sentinel_password=options.get("sentinel_kwargs", {}).get("password"),
            timeout_s=min(options["socket_timeout"], SEND_TIMEOUT_S),
            connect_timeout_s=min(options["socket_connect_timeout"], SEND_TIMEOUT_S),
        )
        broker = _BROKERS.setdefault(app, ThreadConnection(client, quiet_s=SEND_QUIET_S))
    return broker


def _lpush(app: Celery, queue: str, messages: list[bytes]) -> None:
    with app.pool.acquire(block=True) as conn:
        # One try to connect when not connected (kombu's own default is three over six seconds,
        # which a client waiting on POST /tasks would sit through three times over).
        conn.ensure_connection(max_retries=0)
        conn.default_channel.client.lpush(queue, *messages)


@retry(
    retry=retry_if_exception_type(_SEND_ERRORS),
    stop=stop_after_attempt(3),
    wait=wait_incrementing(start=0.1, increment=0.4),
    reraise=True,
)
def _lpush_again(app: Celery, queue: str, messages: list[bytes]) -> None:
    """The three more tries after a failed send, 0.1 and 0.5 s apart: a broker that restarts
    or fails over within about a second loses no time (the retry wrapper costs more than a
    send, so the first try is outside it)."""
    _lpush(app, queue, messages)


_HOST = socket.gethostname()
# Celery's empty embedded options (no callbacks, chain or chord), the third part of the body.
_NO_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(task_name: str, record_id: int, queue: str) -> bytes:
    """The Redis list entry of one task message, as kombu's Redis transport stores it."""
    message_id = str(uuid.uuid4())
    body = orjson.dumps([[record_id], {}, _NO_EMBED])
    headers: dict[str, Any] = {
        "lang": "py", "task": task_name, "id": message_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": message_id, "parent_id": None,
        "argsrepr": f"[{record_id}]", "kwargsrepr": "{}", "origin": f"{os.getpid()}@{_HOST}",
        "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }  # fmt: skip
    properties = {
        "correlation_id": message_id,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return orjson.dumps(envelope)
