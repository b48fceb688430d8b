"""The one logging setup of every process: one event per line, JSON by default.

Each line carries the process (``service``) and what it is about: ``request_id``, ``task_id``,
``account_id``, ``message_id``, bound for the length of a request or a Celery task with
:func:`bound`. The secrets of a running task are scrubbed from every record (see
``shared.redaction``): from the message and the traceback by the record factory, and from the
fields passed with ``extra=`` here, since those are added after the factory ran.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import IO, Any

import orjson

from shared import redaction
from shared.settings import Settings

CONTEXT_FIELDS = ("request_id", "task_id", "account_id", "message_id")

# Never mutated: each bind sets a new mapping, so a default shared by every context is safe.
_EMPTY: dict[str, Any] = {}
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "understudy_log_context",
    default=_EMPTY,  # noqa: B039
)

# What a LogRecord has of its own; anything else on a record came with `extra=` or the context.
_STANDARD = {
    *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
    "message",
    "asctime",
    "taskName",
}


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every line logged inside (in this thread or task) carries these fields."""
    token = bind(**fields)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> contextvars.Token[dict[str, Any]]:
    """Add fields to the current context; the token undoes it (``unbind``)."""
    added = {key: value for key, value in fields.items() if value is not None}
    return _context.set({**_context.get(), **added})


def unbind(token: contextvars.Token[dict[str, Any]]) -> None:
    _context.reset(token)


def current() -> dict[str, Any]:
    """The fields bound now."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Adds the bound fields and the process name to a record, and scrubs its extra fields; for
    the text format, renders them as ``context``."""

    def __init__(self, service: str, *, text: bool) -> None:
        super().__init__()
        self.service = service
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.service = self.service
        if record.name == "celery.app.trace":
            # Celery adds its message's parts as `data`, with a traceback even for a failure
            # it logs as expected: the message says it all, and a real error has exc_info.
            record.__dict__.pop("data", None)
        if record.levelno == logging.CRITICAL and str(record.msg).startswith(_LOST_ACK):
            _lost_ack(record)
        if record.exc_info:
            # Written from exc_text from here on, which the record factory scrubbed (the JSON
            # formatter would otherwise format the exception again, unscrubbed).
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        extras = [key for key in record.__dict__ if key not in _STANDARD]
        redaction.scrub_fields(record, [*extras, "exc_text"])
        if not self.text:
            return True
        shown = " ".join(
            f"{key}={record.__dict__[key]}"
            for key in extras
            if key not in ("service", "context") and record.__dict__[key] is not None
        )
        record.context = f" [{shown}]" if shown else ""
        return True


# kombu's words for an acknowledgement (or a rejection) its broker connection lost.
_LOST_ACK = ("Couldn't ack", "Couldn't reject")


def _lost_ack(record: logging.LogRecord) -> None:
    """A message a worker could not acknowledge because Redis went away under it: kombu logs
    it CRITICAL with a traceback, but nothing is lost (Redis puts the message back after its
    visibility timeout, and its second delivery finds the task's state in Postgres), so it is a
    WARNING that says so, with the reason and no traceback."""
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    record.msg = (
        f"{record.msg}; the broker connection was lost, so the message will be delivered again"
        " after its visibility timeout and that delivery will find the task's state in Postgres"
    )
    record.exc_info = None
    record.exc_text = None


class _JsonLines(logging.Formatter):
    """A record as one JSON object, without spaces: ``level``, ``logger``, ``message``,
    ``traceback`` for an error, the fields passed with ``extra=`` and bound to the context,
    ``service`` and ``timestamp`` (UTC, ISO 8601). Values JSON has no type for are written as
    text; the line is ASCII, other characters escaped (``\\u00e9``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "context":
                line[key] = value
        line["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        try:
            text = orjson.dumps(line, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an int past 64 bits, say: the standard library writes any value
            return _ascii(line)
        return text if text.isascii() else _ascii(line)


def _ascii(line: dict[str, Any]) -> str:
    return json.dumps(line, default=_as_text, separators=(",", ":"))


def _as_text(value: Any) -> str:
    """A value JSON has no type for: a date or time in ISO 8601, anything else as ``str``."""
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s %(name)s: %(message)s%(context)s"


def handler(service: str, fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A handler that writes each record as one line, in ``fmt``, to stderr or ``stream``."""
    out = logging.StreamHandler(stream)
    out.addFilter(ContextFilter(service, text=fmt != "json"))
    if fmt == "json":
        out.setFormatter(_JsonLines())
    else:
        out.setFormatter(logging.Formatter(TEXT_FORMAT))
    return out


def logging_config(settings: Settings, service: str) -> dict[str, Any]:
    """The ``dictConfig`` of a process. gunicorn takes it as ``logconfig_dict``."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {
            "understudy": {
                "()": "shared.logs.handler",
                "service": service,
                "fmt": settings.log_format,
            }
        },
        "root": {"level": level, "handlers": ["understudy"]},
        "loggers": {
            # gunicorn's own lines go through the same handler, one format for the process.
            "gunicorn.error": {"level": level, "handlers": ["understudy"], "propagate": False},
            # Each request is logged by the app, with its request id (api.request_log).
            "gunicorn.access": {"handlers": [], "propagate": False},
            # Every request of the Redis, HTTP and Selenium clients at DEBUG is noise, not news.
            "urllib3": {"level": "WARNING"},
            "selenium": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings, service: str) -> None:
    """Route every logger of this process through one handler, as ``LOG_FORMAT`` says, Python's
    warnings included (a library's DeprecationWarning is a line like any other, not raw text)."""
    logging.config.dictConfig(logging_config(settings, service))
    logging.captureWarnings(True)
