"""NotifiedMemo: answers remembered while a listener hears of every change, and only then."""

from __future__ import annotations

import logging
import os
import time

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from shared.memo import RECONNECT_AFTER_S, NotifiedMemo

CHANNEL = "memo_test"


class Lookups:
    """A lookup that counts its calls and answers what the test says."""

    def __init__(self, answer: object = 7) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self) -> object:
        self.calls += 1
        return self.answer


def _remembering(memo: NotifiedMemo, lookup: Lookups, key: str = "k") -> None:
    """Ask until the answer comes from memory: the listener is up."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        before = lookup.calls
        memo.get(key, lookup)
        if lookup.calls == before:
            return
        time.sleep(0.05)
    raise AssertionError("the memo never remembered an answer")


def _notify(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"NOTIFY {CHANNEL}")


@pytest.fixture
def memo(runtime):
    made = NotifiedMemo(runtime.database_url, CHANNEL)
    yield made
    made.close()


def test_an_answer_is_remembered_until_a_notification_forgets_it(memo, runtime):
    lookup = Lookups()
    _remembering(memo, lookup)
    assert memo.get("k", lookup) == 7
    # when a change is announced, the next lookups ask again as soon as the listener hears it
    lookup.answer = 8
    _notify(runtime.database_url)
    assert _answer_within(memo, lookup, 8, seconds=5)


def _answer_within(memo: NotifiedMemo, lookup: Lookups, wanted: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if memo.get("k", lookup) == wanted:
            return True
        time.sleep(0.001)
    return False


def test_none_is_never_remembered(memo):
    absent = Lookups(answer=None)
    _remembering(memo, Lookups(), key="other")  # the listener is up
    for _ in range(3):
        assert memo.get("missing", absent) is None
    assert absent.calls == 3


def test_while_the_listener_is_cut_off_nothing_is_remembered(memo, runtime):
    lookup = Lookups()
    _remembering(memo, lookup)
    # when the listener's connection is killed (as a restart or a network cut would); the
    # kill waits until the backend has exited, so the change below comes after it is down
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (f"understudy listen {CHANNEL}",),
        ).fetchall()
    assert killed, "no listener found"
    # then a change made while it is down is not missed: every lookup asks until it is back
    lookup.answer = 9
    _notify(runtime.database_url)
    assert memo.get("k", lookup) == 9
    # and once it listens again, answers are remembered again
    _remembering(memo, lookup)


def test_a_listener_socket_closed_before_the_listener_knows_means_look_it_up(memo):
    # given a remembered answer
    lookup = Lookups()
    _remembering(memo, lookup)
    # when the listener's socket is closed under it, as the driver does when PostgreSQL goes
    # away, before the listener thread has heard of it
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with memo._lock:
        memo._socket = read_end
    # then the answer is looked up again, not an error (a 500 during a failover)
    lookup.answer = 9
    assert memo.get("k", lookup) == 9


def test_a_listener_cut_off_for_a_while_warns_once_and_says_when_it_hears_again(runtime, caplog):
    # given a listener that signs in as a role of its own, and is up
    _admin(runtime, "DROP ROLE IF EXISTS memo_listener", "CREATE ROLE memo_listener LOGIN")
    memo = NotifiedMemo(make_conninfo(runtime.database_url, user="memo_listener"), CHANNEL)
    try:
        lookup = Lookups()
        _remembering(memo, lookup)
        caplog.set_level(logging.INFO, logger="shared.memo")
        # when its connection is cut and PostgreSQL refuses it for a few of its retries
        _admin(
            runtime,
            "ALTER ROLE memo_listener NOLOGIN",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'memo_listener'",
        )
        time.sleep(4 * RECONNECT_AFTER_S)
        _admin(runtime, "ALTER ROLE memo_listener LOGIN")
        _remembering(memo, lookup)
    finally:
        memo.close()
        _admin(runtime, "ALTER ROLE memo_listener NOLOGIN")
    # then the outage was one warning, not one per retry, and its end was logged
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "shared.memo"]
    [warning] = [m for level, m in logged if level == logging.WARNING]
    assert warning.startswith("stopped hearing of memo_test changes: ")
    assert (logging.INFO, "listening for memo_test changes again") in logged


def _admin(runtime, *statements: str) -> None:
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
