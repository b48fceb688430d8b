"""One JSON event per line, with the bound context, and no secret of a running task in it."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kombu import Message

from shared import logs, redaction
from shared.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]

SECRET = "Hx7-quartz-Lantern"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """What the process's handler writes (JSON), for a logger of the test's own."""
    out = io.StringIO()
    handler = logs.handler("worker", "json", out)
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield out, logger
    logger.removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_line_is_one_json_event_with_the_bound_context(captured):
    out, logger = captured
    # given a task's context bound, then a message's inside it
    with logs.bound(task_id=7, account_id=3):
        logger.info("claimed %s", "it")
        with logs.bound(message_id=11):
            logger.warning("attempt failed", extra={"outcome": "timeout"})
    # when a line is logged after both ended
    logger.info("idle")
    # then every line is JSON with the fields bound when it was written, and no more
    first, second, third = _lines(out)
    assert first["message"] == "claimed it" and first["level"] == "INFO"
    assert (first["task_id"], first["account_id"], first["service"]) == (7, 3, "worker")
    assert "message_id" not in first
    assert (second["message_id"], second["task_id"], second["outcome"]) == (11, 7, "timeout")
    assert "task_id" not in third and "account_id" not in third
    assert all("timestamp" in line and line["logger"] == "tests.logs" for line in (first, third))


def test_a_running_tasks_secrets_are_scrubbed_from_message_extras_and_traceback(captured):
    out, logger = captured
    # given a task run whose redactor knows a secret
    with redaction.active(redaction.Redactor([SECRET])):
        # when the secret reaches a message, an extra field and an exception
        logger.info("typed %s", SECRET, extra={"reason": f"the portal said {SECRET}"})
        try:
            raise ValueError(f"boom {SECRET[::-1]}")
        except ValueError:
            logger.exception("internal error")
    # then no line carries it, in any direction, and the traceback is still there
    text = out.getvalue()
    assert SECRET not in text and SECRET[::-1] not in text
    info, error = _lines(out)
    assert info["message"] == "typed ***" and info["reason"] == "the portal said ***"
    assert "ValueError: boom ***" in error["traceback"]


def test_an_ack_lost_with_the_broker_is_a_warning_not_a_critical_traceback(captured):
    # given a message whose acknowledgement fails because Redis went away under the worker
    out, logger = captured

    class GoneChannel:
        no_ack_consumers = None

        def basic_ack(self, *args, **kwargs):
            raise ConnectionError("Connection closed by server.")

    message = Message(body=b"{}", channel=GoneChannel(), delivery_tag="7f3c")
    # when kombu logs it, as the Celery worker has it do
    message.ack_log_error(logger, (ConnectionError,))
    # then the line is a warning that says nothing is lost, with the reason and no traceback
    (line,) = _lines(out)
    assert line["level"] == "WARNING"
    assert line["message"].startswith("Couldn't ack '7f3c', reason:ConnectionError(")
    assert "delivered again" in line["message"]
    assert "traceback" not in line


def test_text_format_is_one_line_with_the_context(captured):
    out = io.StringIO()
    logger = logging.getLogger("tests.logs.text")
    handler = logs.handler("api", "text", out)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with logs.bound(request_id="abc"):
            logger.warning("slow")
    finally:
        logger.removeHandler(handler)
    [line] = out.getvalue().splitlines()
    assert line.endswith("WARNING api tests.logs.text: slow [request_id=abc]")


def test_log_format_is_json_or_text():
    assert load_settings({}).log_format == "json"
    assert load_settings({"LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


def test_any_value_is_written_and_each_line_is_ascii(captured):
    out, logger = captured
    # when a line carries text that is not ASCII, a date, an int past 64 bits and an object
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    logger.info("patient %s", "José", extra={"when": when, "big": 2**70, "thing": _Thing(), "n": 5})
    logger.info("plain", extra={"when": when})
    # then each is one ASCII line, with every value as JSON or as text
    raw = out.getvalue().splitlines()
    assert all(line.isascii() for line in raw)
    first, second = _lines(out)
    assert first["message"] == "patient José"
    assert (first["when"], first["big"], first["thing"], first["n"]) == (
        "2026-01-02T03:04:05+00:00",
        2**70,
        "a thing",
        5,
    )
    assert second["when"] == "2026-01-02T03:04:05+00:00"
    assert list(first)[:3] == ["level", "logger", "message"]
    assert list(first)[-2:] == ["service", "timestamp"]


class _Thing:
    def __str__(self) -> str:
        return "a thing"


def test_a_python_warning_is_a_json_line_like_any_other(tmp_path):
    # given a process that set up its logging, then hit a library's warning
    script = (
        "import warnings\n"
        "from shared.logs import configure_logging\n"
        "from shared.settings import load_settings\n"
        "configure_logging(load_settings({}), 'worker')\n"
        "warnings.warn('this call goes away next year', DeprecationWarning, stacklevel=1)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-W", "always", "-c", script], capture_output=True, text=True,
        timeout=60, check=True, cwd=ROOT,
    )  # fmt: skip
    # then every line it wrote is a JSON event, the warning's among them
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    [warning] = [e for e in events if e["logger"] == "py.warnings"]
    assert "this call goes away next year" in warning["message"]
    assert (warning["level"], warning["service"]) == ("WARNING", "worker")
