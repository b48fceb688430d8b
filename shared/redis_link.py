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

import os
import threading
from typing import Any

import redis
from redis.sentinel import Sentinel


def is_sentinel(url: str) -> bool:
    """REDIS_URL names Redis Sentinel: ``sentinel://host:26379;sentinel://host2:26379/0``."""
    return url.startswith("sentinel://")


def redis_client(
    url: str, master: str, *, timeout_s: float = 2.0, connect_timeout_s: float = 2.0
) -> redis.Redis:
    """A client of the Redis that ``url`` names, or of the master its sentinels name."""
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": connect_timeout_s}
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **timeouts)
    hosts = []
    for address in sentinels(url):
        host, _, port = address.rpartition(":")
        hosts.append((host, int(port)))
    last = [part for part in url.split(";") if part][-1]
    db = int(last.split("://", 1)[1].partition("/")[2] or 0)  # the last sentinel's path
    sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
    return sentinel.master_for(master, db=db)


def sentinels(url: str) -> list[str]:
    """The ``host:port`` of each sentinel a Sentinel REDIS_URL names."""
    return [part.split("://", 1)[1].split("/", 1)[0] for part in url.split(";") if part]


class ThreadConnection:
    """One command at a time on a connection of the calling thread's own, made from ``client``'s
    pool (so through the sentinels when the client follows them) and kept for its next call.

    A connection that Redis closed meanwhile (a restart, a failover, an idle timeout) is made
    again once, at once; any other failure is the caller's, and the connection is made again on
    the next call. A process that forks makes its own.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._local = threading.local()

    def call(self, *args: Any) -> Any:
        """Send one command and return its reply as Redis gave it (no response callback)."""
        try:
            return self._call(args)
        except redis.ConnectionError:
            return self._call(args)  # once more, on a connection made again

    def _call(self, args: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._local.conn = self._client.connection_pool.make_connection()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except redis.ResponseError:
            raise  # an answer: the connection is in step
        except BaseException:
            # Anything else may leave a reply unread: never read it as the next command's.
            conn.disconnect()
            raise
