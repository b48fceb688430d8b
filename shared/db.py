"""Connections and migrations. One pool per process, built by the process's factory."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import select
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import unquote

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import ConnectionPool
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from shared.redaction import Redactor

log = logging.getLogger(__name__)


def whole_number(text: str, digits: int = 18) -> int | None:
    """``text`` as a whole number when it is ASCII digits, at most ``digits`` of them, else None.
    Not "²", which ``str.isdigit`` accepts and ``int`` refuses, nor "٣", which ``int`` reads as
    3; 18 digits always fit a bigint id."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


T = TypeVar("T")

# A pooled connection. Its rows are dicts (the pool's row factory); typed Any so that a row
# read right after an INSERT ... RETURNING can be indexed without ceremony.
Conn = Connection[Any]

# The largest value of an ``integer`` column (a version number): a larger one matches no row.
MAX_INTEGER = 2**31 - 1


class MissingRow(LookupError):
    """A statement that must return a row returned none."""


def hold_lock(conn: Conn, *key: object) -> None:
    """Hold the lock named by ``key``'s parts (joined with ``:``, as ``portal:7:acme``) until
    the transaction ends: what two transactions must not decide at once waits its turn."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (":".join(map(str, key)),)
    )


def fetch_one(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """The row a statement must return: an INSERT ... RETURNING, or a row known to exist."""
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise MissingRow(sql.split(None, 3)[:3])
    return row


def relax_commit(conn: Conn) -> None:
    """Let the current transaction's COMMIT return before its WAL record reaches the disk.

    Only for writes whose loss in a crash is harmless or covered by a later durable commit:
    PostgreSQL flushes the WAL in order, so the next synchronous commit of any transaction makes
    this one durable too. It saves a disk flush while the transaction's row locks are held.
    """
    conn.execute("SET LOCAL synchronous_commit TO off")


@contextmanager
def outside_transaction(conn: Conn) -> Iterator[Conn]:
    """Run statements each on its own, with no BEGIN and COMMIT around them: one round trip per
    statement instead of three. For reads that stand alone, such as an API key lookup, and for
    a caller that sends its own BEGIN and COMMIT statements in a pipeline; a transaction such a
    caller left open is rolled back here."""
    conn.autocommit = True
    try:
        yield conn
    finally:
        if not conn.closed:  # a broken connection is the pool's to discard
            try:
                conn.rollback()  # nothing to do unless a transaction was left open
                conn.autocommit = False
            except psycopg.Error:
                log.debug("connection left broken; the pool discards it", exc_info=True)


# The database is unreachable, restarting, failing over, or the pool had no connection to give
# in time (psycopg_pool's PoolTimeout is one of these). Worth retrying; never the client's fault.
DB_UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError,)


def check_idle_connection(conn: Conn) -> None:
    """The pool's check as a connection leaves it: a round trip only when the socket says so.

    A connection idle in the pool has nothing to read unless the server wrote to it unasked:
    the FATAL it sends as it shuts down or terminates the backend, or the socket's close. So a
    readable socket is checked with a full round trip (which raises if it is broken, and the
    pool replaces it); a quiet one is used as it is, without the round trip that would
    otherwise precede every checkout.
    """
    if conn.closed or select.select([conn.fileno()], [], [], 0)[0]:
        ConnectionPool.check_connection(conn)


def without_password(text: str, url: str) -> str:
    """``text`` with the password of the database ``url`` (either form of it, in any of the
    encodings shared.redaction finds) replaced by ***."""
    password = _password_of(url)
    return Redactor([password]).text(text) if password else text


def _password_of(url: str) -> str | None:
    found = _URL_PASSWORD.search(url) or _KEYWORD_PASSWORD.search(url)
    return unquote(found.group(1)) if found else None


_URL_PASSWORD = re.compile(r"://[^/@\s]*?:([^@/\s]+)@")
_KEYWORD_PASSWORD = re.compile(r"\bpassword\s*=\s*'?([^'\s]+)")


class _PoolLogWithoutPasswords(logging.Filter):
    """Takes the pools' database passwords out of the pool's log records: libpq quotes a
    malformed URL whole in its error, and the pool logs each failed attempt."""

    def __init__(self) -> None:
        super().__init__()
        self._redactors: dict[str, Redactor] = {}  # by password, each made once

    def add(self, url: str) -> None:
        password = _password_of(url)
        if password and password not in self._redactors:
            self._redactors[password] = Redactor([password])

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._redactors:
            return True
        message = record.getMessage()
        hidden = message
        for redactor in list(self._redactors.values()):
            hidden = redactor.text(hidden)
        if hidden != message:
            record.msg, record.args = hidden, ()
        return True


_POOL_LOG = _PoolLogWithoutPasswords()
logging.getLogger("psycopg.pool").addFilter(_POOL_LOG)


def create_pool(
    url: str,
    *,
    max_size: int = 10,
    name: str = "understudy",
    connect_timeout_s: float = 3.0,
    timeout_s: float = 5.0,
) -> ConnectionPool:
    """A pool of dict-row connections; each ``with pool.connection()`` block is one transaction.

    Built to ride out a database restart: every connection is checked as it leaves the pool
    (:func:`check_idle_connection`), so one broken by the restart is replaced instead of failing
    the statement; waiting for a
    connection is bounded by ``timeout_s`` (then PoolTimeout, a 503 for the API); and the
    background reconnection gives up quickly, so the next request starts a fresh attempt
    instead of waiting out an exponential backoff grown long during the outage.
    """
    _POOL_LOG.add(url)
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        # libpq counts whole seconds and treats anything under 2 as 2.
        kwargs={"row_factory": dict_row, "connect_timeout": max(2, round(connect_timeout_s))},
        check=check_idle_connection,
        configure=_configure,
        timeout=timeout_s,
        reconnect_timeout=timeout_s,
        name=name,
        open=True,
    )


def _configure(conn: Conn) -> None:
    set_json_dumps(_jsonb_text, conn)


def _jsonb_text(value: Any) -> bytes | str:
    """The text of a ``json``/``jsonb`` parameter (``Jsonb(...)``), written by orjson: the same
    value as the standard library's, at a fraction of the cost (the database keeps the parsed
    value, so spacing and escapes do not matter). An int past 64 bits, which orjson refuses,
    is written by the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value)


def in_transaction(pool: ConnectionPool, work: Callable[[Conn], T], *, retry_s: float) -> T:
    """``work(conn)`` in one transaction, run again from the start while the database is
    unavailable, with exponential backoff, for at most ``retry_s``; then the last error.

    Only for work that is safe to repeat: a commit whose answer was lost may have happened.
    """
    retrying = Retrying(
        retry=retry_if_exception_type(DB_UNAVAILABLE),
        stop=stop_after_delay(retry_s),
        wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
        before_sleep=lambda state: log.warning(
            "database unavailable (%s); retrying", state.outcome and state.outcome.exception()
        ),
        reraise=True,
    )
    for attempt in retrying:
        with attempt, pool.connection() as conn:
            return work(conn)
    raise AssertionError("unreachable")  # Retrying either returns or re-raises


def _sqlalchemy_url(url: str) -> str:
    # SQLAlchemy is used only by alembic, through the same psycopg 3 driver as everything else.
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("shared") / "migrations"))
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(url))
    return config


def earlier_migration(name: str) -> ModuleType:
    """The migration ``name`` (its file name without ``.py``) as a module, for a later one that
    reuses its SQL: alembic loads migrations by path, so they are no modules to import."""
    path = resources.files("shared") / "migrations" / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"understudy_migration_{name[:4]}", str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def migrate(url: str) -> None:
    """Bring the database schema up to the newest revision."""
    command.upgrade(_alembic_config(url), "head")
