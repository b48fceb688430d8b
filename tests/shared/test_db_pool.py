"""The pool's checkout check: a connection the server ended is replaced, a quiet one is reused."""

from __future__ import annotations

import psycopg

from shared.db import create_pool


def _backend_pid(pool) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def test_a_terminated_connection_is_replaced_as_it_leaves_the_pool(services):
    database_url = services["database_url"]
    pool = create_pool(database_url, max_size=1)
    try:
        first = _backend_pid(pool)
        with psycopg.connect(database_url, autocommit=True) as admin:
            # Waits (up to 5 s) until the backend has gone, as after a server restart.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
        # The statement runs on a new connection: the checkout saw the server's goodbye.
        second = _backend_pid(pool)
        assert second != first
    finally:
        pool.close()


def test_a_quiet_connection_is_kept(services):
    pool = create_pool(services["database_url"], max_size=1)
    try:
        assert _backend_pid(pool) == _backend_pid(pool)
    finally:
        pool.close()
