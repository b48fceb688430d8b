"""Answers a process remembers for as long as PostgreSQL has told it nothing changed.

A :class:`NotifiedMemo` keeps the answers of one kind of lookup (an API key's account) while a
thread of its own LISTENs on the channel that the table's triggers NOTIFY on every change. Any
notification forgets every answer; so does the listener losing its connection, and while it is
down nothing is remembered, so a lookup is never answered from memory that a change could have
passed by unheard. A change is heard as soon as PostgreSQL delivers its notification, usually
within a millisecond of the commit; a hit while a notification waits unread on the listener's
socket is not trusted.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import psycopg

from shared.db import without_password

log = logging.getLogger(__name__)

V = TypeVar("V")

# How often the listener checks that its connection still answers, and how long a silent
# connection may hold a write before the kernel gives up on it: the bound on how late a change
# is heard when the network to PostgreSQL fails without a reset.
CHECK_EVERY_S = 5.0
TCP_USER_TIMEOUT_MS = 10_000
RECONNECT_AFTER_S = 1.0


class NotifiedMemo(Generic[V]):
    """Lookups remembered by key, in one process, while its listener hears ``channel``."""

    def __init__(self, database_url: str, channel: str, *, max_entries: int = 10_000) -> None:
        self._url = database_url
        self._channel = channel
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, V] = {}
        self._generation = 0  # moves on whenever remembered answers may be stale
        self._socket: int | None = None  # the listener's, while it listens
        self._pid: int | None = None  # the process whose thread listens (gunicorn forks)
        self._stopping = threading.Event()

    def get(self, key: Hashable, lookup: Callable[[], V | None]) -> V | None:
        """The remembered answer for ``key``, or ``lookup()``'s (remembered unless None)."""
        self._start()
        with self._lock:
            socket, generation = self._socket, self._generation
            if socket is not None and key in self._entries and not _readable(socket):
                return self._entries[key]
        value = lookup()
        with self._lock:
            # Only if the listener was up before the lookup began and heard nothing since.
            if value is not None and socket is not None and generation == self._generation:
                if len(self._entries) >= self._max:
                    self._entries.clear()
                self._entries[key] = value
        return value

    def close(self) -> None:
        self._stopping.set()

    def _forget(self, *, listening_on: int | None) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self._socket = listening_on

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the parent's memory but not its listener thread.
            self._pid, self._socket = os.getpid(), None
            self._entries.clear()
            self._generation += 1
        name = f"listen-{self._channel}"
        threading.Thread(target=self._listen, name=name, daemon=True).start()

    def _listen(self) -> None:
        cut_off = False  # one warning when the listener loses PostgreSQL, not one per retry
        while not self._stopping.is_set():
            try:
                conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    application_name=f"understudy listen {self._channel}",
                    connect_timeout=5,
                    tcp_user_timeout=TCP_USER_TIMEOUT_MS,
                    keepalives_idle=int(CHECK_EVERY_S),
                    keepalives_interval=2,
                    keepalives_count=2,
                )
            except psycopg.Error as exc:
                if not cut_off:
                    log.warning(
                        "cannot listen for %s changes yet: %s",
                        self._channel,
                        without_password(str(exc), self._url),
                    )
                cut_off = True
                self._stopping.wait(RECONNECT_AFTER_S)
                continue
            try:
                conn.execute(f"LISTEN {self._channel}")
                self._forget(listening_on=conn.pgconn.socket)
                if cut_off:
                    log.info("listening for %s changes again", self._channel)
                cut_off = False
                while not self._stopping.is_set():
                    for _ in conn.notifies(timeout=CHECK_EVERY_S):
                        self._forget(listening_on=conn.pgconn.socket)
                    conn.execute("SELECT 1")  # still answering
            except Exception as exc:
                if not cut_off:
                    log.warning(
                        "stopped hearing of %s changes: %s",
                        self._channel,
                        without_password(str(exc), self._url),
                    )
                cut_off = True
            finally:
                # Before the socket closes: its number may be reused by another connection.
                self._forget(listening_on=None)
                conn.close()
            self._stopping.wait(RECONNECT_AFTER_S)


def _readable(socket: int) -> bool:
    """Whether something (a notification) waits on the socket, unread.

    A socket already closed counts as readable: when PostgreSQL goes away, the driver closes
    the listener's socket before the listener thread hears of it (it was an OSError, so a 500,
    during a failover).
    """
    try:
        return bool(select.select([socket], [], [], 0)[0])
    except (OSError, ValueError):
        return True
