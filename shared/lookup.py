"""Looking up a host's name within a deadline, in threads that are capped.

``socket.getaddrinfo`` blocks and takes no timeout: a name whose DNS hangs (a slow or
black-holed authoritative server) would hold the calling thread for as long as the system
resolver keeps trying. A client chooses the names: a webhook receiver, a portal's address and
origins. So each lookup runs in a daemon thread of its own, and the caller waits for it only
until its deadline; a lookup still running then is left to end on its own, and its answer is
dropped (:class:`NameTimedOut`).

Those threads are capped per process (``LOOKUP_THREADS``), so names that never answer cannot
pile them up, and one owner (an account, in the API) holds at most a quarter of them. A lookup
that finds every thread taken is not started (:class:`LookupsBusy`): that shortage is ours, and
may be another tenant's doing, so it is never told as the name's fault (the dispatcher puts the
message back to wait a moment, the API answers 503). Daemon threads, so a stuck lookup never
holds up the process's exit.

The dispatcher's transport gives each attempt's lookup the attempt's own deadline; the API (one
:class:`Lookups` per app) gives one request's lookups, however many names it checks, one
deadline of ``LOOKUP_TIMEOUT_S``; an agent worker (one :class:`Lookups` per process) gives a
task's check of its portal's address ``LOOKUP_TIMEOUT_S``, the task's account as owner.
"""

from __future__ import annotations

import threading
import time

from shared import metrics
from shared.ssrf import Resolver, UrlRefused


class NameTimedOut(UrlRefused):
    """The name did not resolve by the deadline; whatever it resolves to is not known."""


class LookupsBusy(Exception):
    """Every lookup thread waits on a name that has not answered; none was started."""


class Lookups:
    """Thread-safe; one per process and use. Runs ``resolver`` with a deadline.

    A lookup may name its ``owner`` (the API names the account): one owner's lookups hold at
    most a quarter of the threads, so one account's names that hang leave the rest to others;
    past its share, its next name is not looked up (:class:`NameTimedOut`, its own doing). A
    lookup whose deadline has passed starts no thread either: the request's later names then
    cost nothing."""

    def __init__(self, resolver: Resolver, *, max_threads: int) -> None:
        self._resolver = resolver
        self._max_threads = max_threads
        self._per_owner = max(1, max_threads // 4)
        self._free = threading.BoundedSemaphore(max_threads)
        self._lock = threading.Lock()
        self._held: dict[object, int] = {}  # running lookups by owner

    def until(self, deadline: float, owner: object = None) -> Resolver:
        """A resolver that gives up at ``deadline`` (a ``time.monotonic()`` time)."""
        return lambda host, port: self.resolve(host, port, deadline=deadline, owner=owner)

    def resolve(self, host: str, port: int, *, deadline: float, owner: object = None) -> list[str]:
        """The resolver's answer, or its exception; :class:`NameTimedOut` if there is none by
        ``deadline`` (or the owner holds its share), :class:`LookupsBusy` if no thread is free
        to ask."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise NameTimedOut(f"the host's name {host!r} did not resolve in time")
        self._take(host, owner)
        lookup = _Lookup(self._resolver, host, port)
        try:
            threading.Thread(
                target=self._run, args=(lookup, owner), name="name-lookup", daemon=True
            ).start()
        except BaseException:
            self._give_back(owner)
            raise
        if not lookup.done.wait(left):
            raise NameTimedOut(f"the host's name {host!r} did not resolve in time")
        return lookup.answer()

    def _take(self, host: str, owner: object) -> None:
        with self._lock:
            if owner is not None and self._held.get(owner, 0) >= self._per_owner:
                raise NameTimedOut(
                    f"the host's name {host!r} was not looked up: {self._per_owner} earlier"
                    " lookups of this account still wait on their DNS servers"
                )
            if not self._free.acquire(blocking=False):
                metrics.NAME_LOOKUPS_REFUSED.inc()
                raise LookupsBusy(
                    f"all {self._max_threads} lookup threads wait on names that have not answered"
                )
            self._held[owner] = self._held.get(owner, 0) + 1

    def _give_back(self, owner: object) -> None:
        with self._lock:
            self._held[owner] -= 1
            if not self._held[owner]:
                del self._held[owner]
            self._free.release()

    def _run(self, lookup: _Lookup, owner: object) -> None:
        metrics.NAME_LOOKUPS.inc()
        try:
            lookup.run()
        finally:
            metrics.NAME_LOOKUPS.dec()
            self._give_back(owner)


class _Lookup:
    """One lookup: what the resolver answered or raised, once ``done`` is set."""

    def __init__(self, resolver: Resolver, host: str, port: int) -> None:
        self._resolver = resolver
        self._host = host
        self._port = port
        self._addresses: list[str] = []
        self._error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._addresses = self._resolver(self._host, self._port)
        except Exception as exc:  # handed to the attempt, which classifies it
            self._error = exc
        finally:
            self.done.set()

    def answer(self) -> list[str]:
        if self._error is not None:
            raise self._error
        return self._addresses
