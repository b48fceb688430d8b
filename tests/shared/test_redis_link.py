"""The per-thread Redis connection of the commands on every request's path, on the real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shared.redis_link import ThreadConnection, redis_client


@pytest.fixture
def admin(settings):
    return redis.Redis.from_url(settings.redis_url)


@pytest.fixture
def link(settings):
    return ThreadConnection(redis_client(settings.redis_url, "", timeout_s=0.5))


def test_a_thread_keeps_its_connection_and_threads_do_not_share_one(link):
    # given the connection of this thread
    mine = link.call("CLIENT", "ID")
    # when it sends again, and another thread sends
    again = link.call("CLIENT", "ID")
    theirs: list[int] = []
    other = threading.Thread(target=lambda: theirs.append(link.call("CLIENT", "ID")))
    other.start()
    other.join()
    # then this thread's commands share one connection, and the other thread has its own
    assert again == mine
    assert theirs and theirs[0] != mine


def test_a_connection_that_redis_closed_is_made_again_and_the_command_runs(link, admin):
    # given a connection in use
    link.call("SET", "link-test", "before")
    first = link.call("CLIENT", "ID")
    # when Redis closes it (as a restart or an idle timeout would)
    admin.client_kill_filter(_id=first)
    # then the next command still runs, on a new connection
    assert link.call("SET", "link-test", "after") == b"OK"
    assert admin.get("link-test") == b"after"
    assert link.call("CLIENT", "ID") != first


def test_a_reply_that_came_too_late_is_never_read_as_the_next_commands(link, admin):
    # given a command that outlasts the connection's timeout (0.5 s)
    with pytest.raises(redis.TimeoutError):
        link.call("BLPOP", "link-test-empty", 2)
    # when its reply arrives meanwhile and the thread sends another command
    admin.lpush("link-test-empty", "late")
    time.sleep(0.1)
    # then that command gets its own reply, on a new connection
    assert link.call("PING") == b"PONG"
    assert link.call("ECHO", "mine") == b"mine"


def test_an_error_reply_keeps_the_connection(link):
    first = link.call("CLIENT", "ID")
    with pytest.raises(redis.ResponseError):
        link.call("NO-SUCH-COMMAND")
    assert link.call("CLIENT", "ID") == first


def test_an_unreachable_redis_raises_a_connection_error():
    from tests.conftest import free_port

    link = ThreadConnection(redis_client(f"redis://127.0.0.1:{free_port()}/0", ""))
    with pytest.raises(redis.ConnectionError):
        link.call("PING")


@pytest.mark.parametrize("passwords", [False, True], ids=["open", "with passwords"])
def test_commands_reach_the_master_the_sentinels_name(tmp_path, passwords):
    from tests.faults.services import RedisSentinelSet

    # given a primary and a replica behind three sentinels (the servers and the sentinels each
    # requiring a password of their own, in the second case)
    secrets = {"password": "servers-pw", "sentinel_password": "sentinels-pw"} if passwords else {}
    group = RedisSentinelSet(tmp_path, **secrets).start()
    try:
        client = redis_client(
            group.url, group.MASTER, sentinel_password=secrets.get("sentinel_password")
        )
        link = ThreadConnection(client)
        # when a thread sends commands on its connection, and through the client's pool
        assert link.call("SET", "link-sentinel", "thread") == b"OK"
        assert client.lpush("link-sentinel-list", "pool") == 1
        # then both land on the primary the sentinels name
        primary = group.server(group.primary_port)
        assert primary.get("link-sentinel") == b"thread"
        assert primary.lrange("link-sentinel-list", 0, -1) == [b"pool"]
        assert group.master_port() == group.primary_port
    finally:
        group.close()
