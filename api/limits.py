"""Limits on what a client sends, and the answers that go with them.

Every limit has a name (its setting), a default and a documented error: a 413 for a size or a
count, a 422 for a shape (depth, length), a 409 for one more of what an account keeps (its own
task types, portals: :mod:`shared.quotas`; its unfinished tasks, ``MAX_QUEUED_TASKS``), each
``limit_exceeded`` with the setting in ``details.limit``. Text that PostgreSQL cannot store (a
NUL, a lone surrogate) is a 400 ``invalid_text``. Ids in URLs are ASCII digits or a 404. Every
answer is ``no-store`` and ``nosniff``. Per-account rate limits are in :mod:`api.rate_limits`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, Response, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from api.errors import ApiError, error_response
from shared.inputs import loads_json
from shared.quotas import QuotaExceeded
from shared.settings import Settings

# Characters PostgreSQL text cannot hold: NUL, and UTF-16 surrogates (JSON's "\ud800" decodes to
# one, and it cannot be encoded as UTF-8).
_UNSTORABLE = {0, *range(0xD800, 0xE000)}


# How much werkzeug's form parser reads at a time (FormDataParser's buffer_size).
_MULTIPART_READ_BYTES = 64 * 1024


class LimitExceeded(ApiError):
    """A request over one of the documented limits; details name the setting and its value.

    A size or a count in the request is a 413 ``payload_too_large``; a shape (depth, length) a
    422, and one more of what the account keeps a 409, ``limit_exceeded``.
    """

    def __init__(self, status: int, setting: str, maximum: int, message: str, **more: Any) -> None:
        code = "payload_too_large" if status == 413 else "limit_exceeded"
        super().__init__(status, code, message, {"limit": setting, "max": maximum, **more})


@contextmanager
def within_quota() -> Iterator[None]:
    """Answer a creation over one of the account's quotas (:mod:`shared.quotas`) with a 409
    ``limit_exceeded`` naming the setting, as the API's and the console's pages both show."""
    try:
        yield
    except QuotaExceeded as err:
        raise LimitExceeded(409, err.setting, err.max, str(err)) from err


class InvalidText(ApiError):
    """Text that is not valid Unicode or holds a NUL byte."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(400, "invalid_text", f"{where} {problem}.", {"where": where})


def check_text(value: str, where: str) -> None:
    """Refuse ``value`` if it holds a character that PostgreSQL text cannot store."""
    if "\x00" in value:
        raise InvalidText(where, "contains a NUL byte (\\u0000), which is not allowed")
    if not value.isascii() and any(ord(c) in _UNSTORABLE for c in value):
        raise InvalidText(where, "is not valid Unicode (it holds a lone surrogate)")


def check_json(value: Any, max_depth: int, setting: str = "MAX_JSON_DEPTH") -> None:
    """Walk a decoded JSON value: its depth within ``max_depth``, every string storable."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            raise LimitExceeded(
                422, setting, max_depth, f"JSON is nested more than {max_depth} deep ({setting})."
            )
        if isinstance(item, dict):
            for key, child in item.items():
                check_text(str(key), "A JSON key")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            check_text(item, "A JSON string")


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Decode a JSON body strictly: UTF-8, bounded depth, numbers Python can read, and none of
    the NaN, Infinity and -Infinity that JSON does not have (:func:`shared.inputs.loads_json`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidText("The request body", "is not valid UTF-8") from err
    try:
        value = loads_json(text)
    except RecursionError as err:
        raise LimitExceeded(
            422, "MAX_JSON_DEPTH", max_depth, f"JSON is nested more than {max_depth} deep."
        ) from err
    except json.JSONDecodeError as err:
        raise ApiError(400, "malformed_json", "The request body is not valid JSON.") from err
    except ValueError as err:  # an integer past Python's 4,300-digit limit
        raise ApiError(
            400, "malformed_json", "The request body has a number with too many digits."
        ) from err
    check_json(value, max_depth)
    return value


class DigitsConverter(BaseConverter):
    """`<int:...>` for ids: ASCII digits only, and small enough for a bigint; else a 404.

    Werkzeug's own accepts any Unicode digit ('²'), which int() then refuses.
    """

    regex = r"[0-9]{1,18}"
    weight = 50

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


def init_app(app: Flask, settings: Settings) -> None:
    """Install the converters, the request screen and the answer headers.

    Call before registering the blueprints: rules take their converters when they are added.
    """
    app.url_map.converters["int"] = DigitsConverter
    # What werkzeug's multipart parser holds back: the parts (files are counted against
    # MAX_FILES below, with their own message) and the text fields (type, data) in memory.
    app.config["MAX_FORM_PARTS"] = settings.max_files + 100
    # Werkzeug's multipart decoder checks MAX_FORM_MEMORY_SIZE against its read buffer as well
    # as against each text field, file parts included: the buffer takes the parser's reads
    # (_MULTIPART_READ_BYTES at a time) on top of what it kept from the last one, the tail of a
    # file part after a CR or LF that might start the boundary. At exactly MAX_DATA_BYTES (64
    # KiB, one read), any file whose read ended near a line break overflowed it: most files over
    # 64 KiB were refused as "a form field over MAX_DATA_BYTES". One read of room beyond the
    # fields' limit keeps files out of it (MAX_FILE_BYTES bounds them); task data keeps its own
    # exact check against MAX_DATA_BYTES (api.tasks), with the same 413.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_data_bytes + _MULTIPART_READ_BYTES + 4096
    app.before_request(lambda: _screen(settings))
    app.after_request(_secure_headers)
    app.register_error_handler(RequestEntityTooLarge, lambda err: _body_too_large(settings))
    app.register_error_handler(ParseException, _unreadable_body)
    app.register_error_handler(NoMoreData, _unreadable_body)


def _screen(settings: Settings) -> None:
    """Refuse, before any handler runs, what no endpoint can use."""
    _check_utf8_url()
    check_text(request.path, "The URL path")
    for name, value in request.args.items(multi=True):
        if not name:  # "?=x" or "?&=x": a value under no name, which no endpoint reads
            raise ApiError(
                400, "bad_request", "A query parameter has no name.", {"where": "the query"}
            )
        check_text(name, "A query parameter name")
        check_text(value, f"The query parameter {name!r}")
    for name, value in request.headers.items():
        check_text(value, f"The header {name!r}")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not key.isascii():
        # stored as text with the answer: its bytes must be UTF-8 (other headers' bytes beyond
        # ASCII are read as HTTP reads them, as latin-1, and never stored)
        _check_utf8_header("Idempotency-Key", key)
    limit = settings.max_idempotency_key_chars
    if key is not None and len(key) > limit:
        raise LimitExceeded(
            422,
            "MAX_IDEMPOTENCY_KEY_CHARS",
            limit,
            f"An Idempotency-Key must be at most {limit} characters (MAX_IDEMPOTENCY_KEY_CHARS).",
        )
    if request.mimetype == "multipart/form-data":
        _screen_multipart(settings)
    elif request.mimetype == "application/x-www-form-urlencoded":  # the console's forms
        for name, value in request.form.items(multi=True):
            check_text(name, "A form field name")
            check_text(value, f"The form field {name!r}")


def _check_utf8_url() -> None:
    # Werkzeug decodes a URL leniently, replacing bytes that are not UTF-8; refuse them instead.
    path = request.environ.get("PATH_INFO", "").encode("latin-1", "replace")
    query = unquote_to_bytes(request.environ.get("QUERY_STRING", ""))
    for where, raw in (("The URL path", path), ("The query string", query)):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidText(where, "is not valid UTF-8") from err


def query_value(name: str) -> str | None:
    """The query parameter ``name``, None when absent; a 400 when it is given more than once
    (which of two limits, cursors or batches was meant cannot be told)."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ApiError(
            400, "bad_request",
            f"The query parameter {name!r} is given {len(values)} times: give it once.",
            {"where": "the query", "parameter": name},
        )  # fmt: skip
    return values[0] if values else None


def _check_utf8_header(name: str, value: str) -> None:
    """Refuse a header whose bytes are not UTF-8 (the server hands them over as latin-1)."""
    try:
        value.encode("latin-1").decode("utf-8")
    except UnicodeEncodeError:
        return  # not bytes read off the wire: text a caller in this process made
    except UnicodeDecodeError as err:
        raise InvalidText(f"The header {name!r}", "is not valid UTF-8") from err


def _screen_multipart(settings: Settings) -> None:
    for name, value in request.form.items(multi=True):
        if name is None:  # no name="..." that parses, e.g. one whose closing quote is escaped
            raise ApiError(
                400, "malformed_body", 'A form field has no name: give each part name="...".'
            )
        check_text(name, "A form field name")
        check_text(value, f"The form field {name!r}")
    uploads = [f for _name, f in request.files.items(multi=True)]
    if len(uploads) > settings.max_files:
        raise LimitExceeded(
            413,
            "MAX_FILES",
            settings.max_files,
            f"At most {settings.max_files} files may be sent with one request (MAX_FILES).",
        )
    for upload in uploads:
        check_text(upload.filename or "", "A file name")
        check_text(upload.content_type or "", f"The content type of file {upload.filename!r}")


def _secure_headers(response: Response) -> Response:
    # Answers carry patient data: never cached, never sniffed into another type.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _body_too_large(settings: Settings):
    if (
        request.mimetype == "multipart/form-data"
        and (request.content_length or 0) <= settings.max_request_bytes
    ):
        limit, maximum = "MAX_DATA_BYTES", settings.max_data_bytes
        message = (
            f"A form field is over {maximum} bytes (MAX_DATA_BYTES), or the request has far"
            f" more parts than MAX_FILES ({settings.max_files}) allows."
        )
    else:
        limit, maximum = "MAX_REQUEST_BYTES", settings.max_request_bytes
        message = f"The request body is over {maximum} bytes (MAX_REQUEST_BYTES)."
    err = LimitExceeded(413, limit, maximum, message)
    return error_response(err.status, err.code, err.message, err.details)


def _unreadable_body(err: Exception):
    # The server's parser gave up while the app read the body (a malformed chunk, say).
    return error_response(400, "malformed_body", "The request body could not be read.")
