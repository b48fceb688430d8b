"""What a process builds once at start: settings, a connection pool, the cipher, the Celery app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery
from cryptography.fernet import MultiFernet
from psycopg_pool import ConnectionPool

from shared import embedded
from shared.accounts import API_KEYS_CHANNEL
from shared.celery import create_celery
from shared.crypto import digest_keys, load_fernet
from shared.db import create_pool
from shared.memo import NotifiedMemo
from shared.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    pool: ConnectionPool
    fernet: MultiFernet
    _celery: Celery | None = field(default=None, repr=False)

    @cached_property
    def celery(self) -> Celery:
        """Built on first use, so processes that never enqueue never touch Redis."""
        return self._celery or create_celery(self.settings, embedded.redis_url(self.settings))

    @cached_property
    def digest_keys(self) -> tuple[bytes, ...]:
        """Keys for digests of request bodies (see shared.crypto.digest_keys), newest first."""
        return digest_keys(self.settings)

    @cached_property
    def api_keys(self) -> NotifiedMemo[int]:
        """The accounts of the API keys seen lately, by key digest; any key change forgets
        them (the API's, which looks up the key of every request)."""
        return NotifiedMemo(self.database_url, API_KEYS_CHANNEL)

    def close(self) -> None:
        if "api_keys" in self.__dict__:
            self.api_keys.close()
        self.pool.close()


def build_runtime(
    settings: Settings, *, pool_size: int = 10, celery: Celery | None = None
) -> Runtime:
    url = embedded.database_url(settings)
    return Runtime(
        settings=settings,
        database_url=url,
        pool=create_pool(
            url,
            max_size=pool_size,
            connect_timeout_s=settings.db_connect_timeout_s,
            timeout_s=settings.db_pool_timeout_s,
        ),
        fernet=load_fernet(settings),
        _celery=celery,
    )


_process: tuple[int, Runtime] | None = None


def process_runtime() -> Runtime:
    """The runtime of this OS process, built on first use.

    Celery's prefork pool forks after importing task modules; a pool opened before the fork
    would share sockets between children, so each child builds its own on first use.
    """
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), build_runtime(load_settings()))
    return _process[1]
