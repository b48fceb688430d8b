"""The task messages Understudy writes itself are the ones Celery would send."""

from __future__ import annotations

import pytest

from shared.celery import DELIVER_WEBHOOK, QUEUES, RUN_TASK, create_celery, send_message


@pytest.fixture
def celery(settings):
    app = create_celery(settings, settings.redis_url)
    with app.connection_for_write() as conn:
        for queue in QUEUES.values():
            conn.default_channel.client.delete(queue)
    return app


def _receive(app, queue: str):
    """The next message on a queue, as a Celery worker's consumer decodes it."""
    with app.connection_for_read() as conn:
        message = conn.SimpleQueue(queue, no_ack=True).get(timeout=5)
    return message.headers, message.decode(), message.properties


@pytest.mark.parametrize("task_name", [RUN_TASK, DELIVER_WEBHOOK])
def test_a_written_message_decodes_as_celerys_own(celery, task_name):
    # given the same task sent once by Celery and once by send_message
    queue = QUEUES[task_name]
    celery.send_task(task_name, args=[42])
    ours_sent = send_message(celery, task_name, 42)
    theirs = _receive(celery, queue)
    ours = _receive(celery, queue)
    # then both land on the task's queue, with the same fields, arguments and delivery details
    assert ours_sent is None
    assert ours[0].keys() == theirs[0].keys()
    assert ours[0]["task"] == task_name and ours[0]["argsrepr"] == "[42]"
    assert ours[0]["root_id"] == ours[0]["id"] != theirs[0]["id"]
    assert ours[1] == theirs[1] == [[42], {}, {"callbacks": None, "errbacks": None,
                                                "chain": None, "chord": None}]  # fmt: skip
    assert ours[2]["delivery_info"]["routing_key"] == queue
    assert ours[2]["delivery_mode"] == theirs[2]["delivery_mode"] == 2
    assert ours[2]["correlation_id"] == ours[0]["id"]


def test_a_message_sent_after_redis_dropped_every_connection_still_lands(celery):
    # given a thread that has sent a message, so it holds a broker connection
    send_message(celery, RUN_TASK, 1)
    # when Redis closes every client connection (a restart, a failover)
    with celery.connection_for_write() as conn:
        admin = conn.default_channel.client
        admin.client_kill_filter(_type="normal", skipme=True)
    # then the next message is sent all the same, and both are on the queue in order
    send_message(celery, RUN_TASK, 2)
    assert _receive(celery, QUEUES[RUN_TASK])[1][0] == [1]
    assert _receive(celery, QUEUES[RUN_TASK])[1][0] == [2]
