"""The pool's checkout check: a connection the server ended is replaced, a quiet one is reused."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

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


def test_json_parameters_keep_every_value(services):
    # Written by orjson, or by the standard library for what orjson refuses (an int past 64
    # bits): the database reads back the value sent.
    pool = create_pool(services["database_url"], max_size=1)
    values = [
        {"name": "José", "nested": [1, 2.5, None, True], "quote": 'a "b" \\ \n'},
        {"big": 2**70, "small": -(2**63)},
        {1: "a key that is not text"},
        [],
    ]
    try:
        with pool.connection() as conn:
            for value in values:
                row = conn.execute("SELECT %s::jsonb AS v", (Jsonb(value),)).fetchone()
                expected = (
                    {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
                )
                assert row["v"] == expected
    finally:
        pool.close()
