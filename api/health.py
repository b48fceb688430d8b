"""/healthz (liveness) and /readyz (readiness).

``/healthz`` reads nothing: it says the process answers. Under gunicorn it is answered before
the request reaches a thread (see ``api.gunicorn_worker``), so busy threads never delay it.
``/readyz`` checks Postgres and Redis, each within ``READY_TIMEOUT_S``. Without Postgres every
request would get a 503, so it answers 503 naming what is down and a load balancer stops sending
traffic. Without Redis the API still takes tasks (they stay ``pending`` until the scheduler sends
them), so it answers 200 ``degraded``, naming Redis: taking every pod out would turn a queue
outage into an API outage.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import psycopg
from flask import Blueprint, jsonify

from api.errors import RETRY_AFTER_S, error_response
from api.runtime import runtime
from shared.celery import broker_ping
from shared.db import without_password
from shared.runtime import Runtime

bp = Blueprint("health", __name__)

HEALTHY = {"status": "ok"}


@bp.get("/healthz")
def healthz():
    return jsonify(HEALTHY)


def _postgres(rt: Runtime) -> None:
    # A connection of its own, not the pool's: readiness must not wait behind busy requests.
    timeout_s = rt.settings.ready_timeout_s
    with psycopg.connect(
        rt.database_url,
        connect_timeout=max(2, round(timeout_s)),
        options=f"-c statement_timeout={int(timeout_s * 1000)}",
        autocommit=True,
    ) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or row[0]:
            # A standby answers, but every write would fail: not ready.
            raise psycopg.OperationalError("the server is a read-only standby")


def _redis(rt: Runtime) -> None:
    broker_ping(rt.celery)


CHECKS: dict[str, Callable[[Runtime], None]] = {"postgres": _postgres, "redis": _redis}


def readiness(rt: Runtime) -> dict[str, str]:
    """Each dependency's state, "ok" or why not, all checked at once within the bound."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    futures = {name: pool.submit(check, rt) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=rt.settings.ready_timeout_s)
    pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hold the answer
    states = {}
    for name, future in futures.items():
        if not future.done():
            states[name] = f"no answer within {rt.settings.ready_timeout_s:g} s"
        elif (exc := future.exception()) is not None:
            # libpq quotes a malformed DATABASE_URL (its password included) in its error, and
            # /readyz needs no key: the password is masked before the line is cut.
            text = without_password(str(exc), rt.database_url)
            first_line = (text.strip().splitlines() or [""])[0][:200]
            states[name] = f"{type(exc).__name__}: {first_line}".rstrip(": ")
        else:
            states[name] = "ok"
    return states


# What the API cannot answer without; the others only delay what it answered (see above).
REQUIRED = ("postgres",)


@bp.get("/readyz")
def readyz():
    states = readiness(runtime())
    down = sorted(name for name, state in states.items() if state != "ok")
    if not any(name in REQUIRED for name in down):
        return jsonify({"status": "degraded" if down else "ok", "checks": states})
    response, status = error_response(
        503, "service_unavailable", f"Not ready: {', '.join(down)} unavailable.", states
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response, status
