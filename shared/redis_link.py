"""The Redis clients Understudy sends its own commands on (the rate limits and the task messages;
Celery and the console's sign-in throttle make theirs from the same REDIS_URL), and the
per-thread connection for the commands on the path of every request.

redis-py's command path (a pool checkout that first polls the socket, a retry wrapper, response
callbacks, observability hooks) costs about three times the command's own send and read. Two
commands run on every ``POST /tasks``: the rate limit's script and the task message's LPUSH.
:class:`ThreadConnection` sends such a command on a connection its thread keeps, and reads the
reply, with nothing in between.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel


def is_sentinel(url: str) -> bool:
    """REDIS_URL names Redis Sentinel: ``sentinel://host:26379;sentinel://host2:26379/0``."""
    return url.startswith("sentinel://")


@dataclass(frozen=True)
class SentinelUrl:
    """What a Sentinel REDIS_URL names: ``sentinel://[[user]:password@]host:port;...[/db]``.

    The user and password, written on the first sentinel as Celery reads them, are those of the
    Redis servers the sentinels name (their ``requirepass`` or ACL user). The sentinels' own
    password, when they require one, is REDIS_SENTINEL_PASSWORD: a sentinel that requires none
    refuses a password.
    """

    hosts: list[tuple[str, int]]
    db: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parts = [urlsplit(part) for part in url.split(";") if part]
        first = parts[0]
        return cls(
            hosts=[(part.hostname or "", part.port or 26379) for part in parts],
            db=int(parts[-1].path.strip("/") or 0),  # the last sentinel's path
            username=unquote(first.username) if first.username else None,
            password=unquote(first.password) if first.password is not None else None,
        )

    def auth(self) -> dict[str, str | None]:
        """The Redis servers' credentials, as redis-py's connection arguments."""
        return {"username": self.username, "password": self.password}


def sentinel_options(password: str | None) -> dict[str, Any]:
    """How a client talks to the sentinels themselves: with their password, and without
    redis-py's default of three tries with backoff per sentinel (asking sentinels that are all
    unreachable would take 15 s before the caller heard of it)."""
    return {"password": password, "retry": Retry(NoBackoff(), 0)}


def redis_client(
    url: str,
    master: str,
    *,
    sentinel_password: str | None = None,
    timeout_s: float = 2.0,
    connect_timeout_s: float = 2.0,
) -> redis.Redis:
    """A client of the Redis that ``url`` names, or of the master its sentinels name."""
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": connect_timeout_s}
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **timeouts)
    named = SentinelUrl.parse(url)
    sentinel = Sentinel(
        named.hosts,
        sentinel_kwargs={**timeouts, **sentinel_options(sentinel_password)},
        **timeouts,
        **named.auth(),
    )
    return sentinel.master_for(master, db=named.db)


class ThreadConnection:
    """One command at a time on a connection of the calling thread's own, made from ``client``'s
    pool (so through the sentinels when the client follows them) and kept for its next call.

    A connection that Redis closed meanwhile (a restart, a failover, an idle timeout) is made
    again once, at once; any other failure is the caller's, and the connection is made again on
    the next call. A process that forks makes its own.

    A connection is connected by its own ``connect()`` before its first command: a Sentinel
    pool's connection asks the sentinels for the master there. (``send_packed_command`` alone
    would connect it to its default address, ``localhost:6379``, whatever the sentinels say.)
    A connection that failed is dropped, never connected again to the address it had: after a
    failover the next one asks the sentinels again.
    """

    def __init__(self, client: redis.Redis, *, quiet_s: float = 0.0) -> None:
        self._client = client
        self._local = threading.local()
        # After a command got no answer within the socket timeout (a Redis that hangs, a host
        # that dropped off the network), every thread's calls fail at once for ``quiet_s``:
        # a request then pays that timeout once per ``quiet_s``, not once per request.
        self._quiet_s = quiet_s
        self._quiet_until = -math.inf

    def call(self, *args: Any) -> Any:
        """Send one command and return its reply as Redis gave it (no response callback)."""
        if time.monotonic() < self._quiet_until:
            raise redis.TimeoutError(
                f"Redis did not answer in time; not asked again for {self._quiet_s:g} s"
            )
        try:
            try:
                return self._call(args)
            except redis.ConnectionError:
                return self._call(args)  # once more, on a connection made again
        except redis.TimeoutError:  # the first try's, or the second's
            self._quiet_until = time.monotonic() + self._quiet_s
            raise

    def _call(self, args: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._client.connection_pool.make_connection()
            conn.connect()
            self._local.conn = conn
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except redis.ResponseError:
            raise  # an answer: the connection is in step
        except BaseException:
            # Anything else may leave a reply unread: never read it as the next command's.
            self._local.conn = None
            conn.disconnect()
            raise
