"""Per-account rate limits (RATE_LIMIT), counted in Redis: one round trip per request, sent on
the thread's own connection (:class:`shared.redis_link.ThreadConnection`).

Every request counts against its account, or against its client address when it carries no
valid key; probes (``/healthz``, ``/readyz``) and metric scrapes are not counted. Each limit
(``100/second;3000/minute``) is a sliding window counter, as in the ``limits`` library: the
current fixed window's count plus the previous window's, weighted by how much of it the sliding
window still covers. All of an account's limits are checked, and counted only if every one has
room, by one Lua script: one EVALSHA whatever the number of limits. Over a limit, the answer is
a JSON 429 with ``Retry-After``: the seconds until one more request fits.

Redis unreachable: requests are served uncounted (the limit protects the service, it is not
worth an outage), and the limiter tries Redis again a second later rather than on every request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from flask import Flask, request
from limits import parse_many
from limits.storage import Storage, storage_from_string

from api.auth import account_id, caller_account
from api.errors import ApiError, error_response
from api.runtime import runtime
from shared import embedded
from shared.redis_link import (
    SentinelUrl,
    ThreadConnection,
    is_sentinel,
    redis_client,
    sentinel_options,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "understudy-rate"
# Seconds to serve uncounted after Redis failed to answer, before asking it again (a Redis that
# hangs then costs one request its timeout every few seconds, not every request).
RETRY_REDIS_AFTER_S = 5.0
_UNCOUNTED_BLUEPRINTS = frozenset({"health", "metrics"})

# KEYS: each limit's previous and current window counters, in pairs. ARGV: per limit, its
# amount, its window in seconds, and the seconds elapsed in the current window. Returns 0 when
# the request was counted, else the 1-based number of the first full limit and its two counts.
_SLIDING_WINDOWS = """
for i = 1, #ARGV / 3 do
    local amount = tonumber(ARGV[3 * i - 2])
    local window = tonumber(ARGV[3 * i - 1])
    local elapsed = tonumber(ARGV[3 * i])
    local previous = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
    local current = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if previous * (window - elapsed) / window + current + 1 > amount then
        return {i, previous, current}
    end
end
for i = 1, #ARGV / 3 do
    redis.call('INCR', KEYS[2 * i])
    redis.call('EXPIRE', KEYS[2 * i], 2 * tonumber(ARGV[3 * i - 1]))
end
return 0
"""


@dataclass(frozen=True)
class Limit:
    amount: int
    window_s: int
    text: str  # "100 per 1 second", as the 429 names it

    def retry_after_s(self, elapsed: float, previous: int, current: int) -> int:
        """Seconds from now until the sliding window has room for one more request."""
        left = self.window_s - elapsed
        if current + 1 > self.amount:
            # Only in a later window: there this window's count is the weighted previous one.
            wait = left + self.window_s * (1 - (self.amount - 1) / current)
        else:
            # Later in this window, once enough of the previous one has slid out.
            wait = left - (self.amount - 1 - current) * self.window_s / previous
        return max(1, math.ceil(wait))


class RateLimited(ApiError):
    """A 429 ``rate_limited`` with ``Retry-After``: over ``setting`` (``RATE_LIMIT``, or a limit
    on what one account has in progress at once)."""

    def __init__(
        self, message: str, retry_after_s: int, *, setting: str, maximum: int | str
    ) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"{message} Retry after {retry_after_s} s.",
            {"limit": setting, "max": maximum, "retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s

    @classmethod
    def over(cls, limit: Limit, retry_after_s: int) -> RateLimited:
        message = f"Too many requests: the limit is {limit.text} (RATE_LIMIT)."
        return cls(message, retry_after_s, setting="RATE_LIMIT", maximum=limit.text)


class _InFlight:
    """How many calls of a kind each account has in progress in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    @contextmanager
    def one_more(
        self, account: int, most: int, refusal: Callable[[], RateLimited]
    ) -> Iterator[None]:
        with self._lock:
            held = self._counts.get(account, 0)
            if held >= most:
                raise refusal()
            self._counts[account] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts[account] - 1
                if left:
                    self._counts[account] = left
                else:
                    del self._counts[account]


_PARSES = _InFlight()


def parsing() -> AbstractContextManager[None]:
    """Hold one of the caller's ``MAX_PARSES_IN_FLIGHT`` in this process while an SOP or a
    portal profile is parsed and validated (hundreds of milliseconds of CPU for a large one):
    one account sending many at once, far below ``RATE_LIMIT``, would otherwise hold every API
    thread, and every other account's calls would wait for one. Past it, a 429 with
    ``Retry-After: 1``."""
    most = runtime().settings.max_parses_in_flight

    def refusal() -> RateLimited:
        message = (
            f"This account is already validating {most} SOPs or portal profiles at once"
            " (MAX_PARSES_IN_FLIGHT)."
        )
        return RateLimited(message, 1, setting="MAX_PARSES_IN_FLIGHT", maximum=most)

    return _PARSES.one_more(account_id(), most, refusal)


class RateLimiter:
    def __init__(self, limits: list[Limit], client: redis.Redis) -> None:
        self.limits = limits
        self._script = client.register_script(_SLIDING_WINDOWS)
        self._redis = ThreadConnection(client)
        self._redis_failed_at = -math.inf

    def count(self, who: str) -> None:
        """Count one request against ``who``; raise :class:`RateLimited` if it has no room."""
        if time.monotonic() - self._redis_failed_at < RETRY_REDIS_AFTER_S:
            return
        now = time.time()
        keys: list[str] = []
        args: list[float] = []
        for limit in self.limits:
            window, elapsed = divmod(now, limit.window_s)
            base = f"{KEY_PREFIX}:{who}:{limit.amount}/{limit.window_s}"
            keys += [f"{base}:{int(window) - 1}", f"{base}:{int(window)}"]
            args += [limit.amount, limit.window_s, elapsed]
        try:
            try:
                full = self._redis.call("EVALSHA", self._script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:  # a Redis that restarted: load it again
                full = self._script(keys=keys, args=args)
        except (redis.RedisError, OSError) as err:
            self._redis_failed_at = time.monotonic()
            log.warning(
                "rate limits not counted for %g s: Redis does not answer (%s: %s)",
                RETRY_REDIS_AFTER_S, type(err).__name__, err,
            )  # fmt: skip
            return
        if full:
            index, previous, current = (int(x) for x in full)
            limit = self.limits[index - 1]
            raise RateLimited.over(
                limit, limit.retry_after_s(args[3 * index - 1], previous, current)
            )


def parse_limits(text: str) -> list[Limit]:
    """RATE_LIMIT's limits (``100/second;3000/minute``); empty when it is ``off``."""
    if text.strip().lower() in ("", "off"):
        return []
    return [Limit(item.amount, item.get_expiry(), str(item)) for item in parse_many(text)]


def storage_uri(settings: Settings) -> str:
    """The same Redis as a ``limits`` storage URI (the console's sign-in throttle).

    Celery's form ``sentinel://[:password@]h1:26379;sentinel://h2:26379/0`` becomes the limits
    library's ``redis+sentinel://[:password@]h1:26379,h2:26379/<master>``.
    """
    url = embedded.redis_url(settings)
    if not is_sentinel(url):
        return url
    named = SentinelUrl.parse(url)
    login = ""
    if named.username or named.password:
        login = f"{quote(named.username or '', safe='')}:{quote(named.password or '', safe='')}@"
    hosts = ",".join(f"{host}:{port}" for host, port in named.hosts)
    return f"redis+sentinel://{login}{hosts}/{settings.redis_sentinel_master}"


def throttle_storage(settings: Settings) -> Storage:
    """The ``limits`` storage of the console's sign-in throttle, on the API's Redis."""
    timeouts = {"socket_timeout": 2, "socket_connect_timeout": 2}
    if not is_sentinel(embedded.redis_url(settings)):
        return _sync_storage(storage_uri(settings), **timeouts)
    # limits would send the servers' login to the sentinels too: theirs is their own.
    to_sentinels = {
        **timeouts,
        "username": None,
        **sentinel_options(settings.redis_sentinel_password),
    }
    return _sync_storage(storage_uri(settings), sentinel_kwargs=to_sentinels, **timeouts)


def _sync_storage(uri: str, **options: Any) -> Storage:
    """``limits``' storage for ``uri`` (a synchronous scheme), with ``options`` passed on to
    it; its stubs type an option as a scalar, where ``sentinel_kwargs`` is a dict."""
    storage = storage_from_string(uri, **options)
    assert isinstance(storage, Storage)  # redis:// and redis+sentinel:// are synchronous
    return storage


def _who() -> str:
    """Whom a request counts against: its account, or its address if it has no valid key."""
    try:
        account = caller_account()
    except Exception:  # the database is down: require_account answers the request with a 503
        account = None
    return f"account:{account}" if account is not None else f"address:{request.remote_addr}"


def init_app(app: Flask, settings: Settings) -> None:
    app.register_error_handler(RateLimited, _too_many)
    limits = parse_limits(settings.rate_limit)
    if not limits:
        return
    client = redis_client(
        embedded.redis_url(settings),
        settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password,
    )
    limiter = RateLimiter(limits, client)

    def count_request() -> None:
        if request.blueprint not in _UNCOUNTED_BLUEPRINTS:
            limiter.count(_who())

    app.before_request(count_request)


def _too_many(err: RateLimited):
    response, status = error_response(err.status, err.code, err.message, err.details)
    response.headers["Retry-After"] = str(err.retry_after_s)
    return response, status
