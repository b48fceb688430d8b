"""The floor for ``bench/api.py``: the least a task-creating endpoint can do.

One committed INSERT of the request body and one LPUSH of a message, in a Flask app served by the
same gunicorn settings, PostgreSQL and Redis as the API. ``POST /tasks`` is measured against it.
"""

from __future__ import annotations

import json

import redis
from flask import Flask, jsonify, request
from psycopg.types.json import Jsonb

from shared.db import create_pool
from shared.embedded import database_url, redis_url
from shared.settings import load_settings

CREATE_TABLE = """
    CREATE TABLE IF NOT EXISTS bench_floor (
        id          bigserial PRIMARY KEY,
        body        jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    )
"""


def create_app() -> Flask:
    settings = load_settings()
    pool = create_pool(database_url(settings))
    queue = redis.Redis.from_url(redis_url(settings))
    app = Flask(__name__)

    @app.post("/tasks")
    def create():
        body = request.get_json()
        with pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO bench_floor (body) VALUES (%s) RETURNING id, created_at",
                (Jsonb(body),),
            ).fetchone()
        queue.lpush("bench_floor", json.dumps({"id": row["id"]}))
        return jsonify({"id": row["id"], "createdAt": row["created_at"].isoformat()})

    return app
