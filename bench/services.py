"""What every benchmark needs: a PostgreSQL and a Redis, the configured ones or embedded ones.

``DATABASE_URL`` / ``REDIS_URL`` when set, else an embedded PostgreSQL and Redis in the given
temporary directory, stopped by the returned cleanup callables.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared import embedded
from shared.db import migrate
from shared.runtime import Runtime, build_runtime
from shared.settings import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def services(tmp: Path) -> tuple[str, str, list[Callable[[], object]]]:
    """(database URL, Redis URL, cleanups), migrated to the newest revision."""
    settings = load_settings()
    cleanup: list[Callable[[], object]] = []
    database_url = settings.database_url
    if not database_url:
        database_url, pg = embedded.start_postgres(tmp / "pg", stop_on_exit=True)
        cleanup.append(pg.cleanup)
    migrate(database_url)
    redis_url = settings.redis_url
    if not redis_url:
        redis_server = embedded.RedisServer(tmp / "redis", free_port()).start()
        redis_url = redis_server.url
        cleanup.append(redis_server.stop)
    return database_url, redis_url, cleanup


@contextmanager
def bench_runtime(**overrides: object) -> Iterator[Runtime]:
    """A runtime on :func:`services` in a temporary directory, with these settings overridden;
    closed, and the services stopped, on leaving."""
    with tempfile.TemporaryDirectory() as tmp:
        database_url, redis_url, cleanup = services(Path(tmp))
        settings = load_settings({}, database_url=database_url, redis_url=redis_url,
                                 run_dir=Path(tmp), **overrides)  # fmt: skip
        runtime = build_runtime(settings, pool_size=4)
        try:
            yield runtime
        finally:
            runtime.close()
            for stop in reversed(cleanup):
                stop()
