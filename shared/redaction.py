"""Scrubbing secrets out of text: the second line of defence behind "typed, never read".

By construction no stored secret (a portal password, a TOTP secret) and no sensitive task input
is ever in an SOP's template context, and the engine refuses to read a field one was typed into.
This module is what catches the rest: a portal that shows a secret back, a library that logs a
command it sent. One `Redactor` per task run holds that run's secrets; every writer (trajectory,
notes, result, logs) passes its text through it, and `active()` makes the process's log records
go through it too while the task runs.

A secret is found in the forms a template filter or an encoder can give it: reversed, in any
letter case, with separators between its characters (``-``, spaces, ``', '`` of a list), URL-,
HTML- or JSON-escaped, in hex, or in base64 at any byte alignment. A one-time code is found
only as written, reversed or encoded, and only as a whole word: six random digits with
separators between them, or inside a longer number, are a date or an amount too often.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

# Below this length a secret is only matched as written (in any case): a pattern with
# separators between three characters would match ordinary text.
_FUZZY_MIN = 4
# Not a letter or a digit before or after a form of a secret matched as a whole word (where
# the form itself begins or ends with one).
_NOT_AFTER_WORD = r"(?<![^\W_])"
_NOT_BEFORE_WORD = r"(?![^\W_])"
# What may stand between the letters and digits of a secret: punctuation and spaces, also
# escaped (`\u0026`, `&amp;`, `%26`), a few of them.
_SEPARATOR = r"(?:[\W_]|\\u[0-9a-f]{4}|&#?[a-z0-9]{1,6};|%[0-9a-f]{2}){0,10}"
# A base64 fragment shorter than this could turn up by chance in any encoded blob.
_B64_MIN = 6


def encoded_forms(secret: str) -> set[str]:
    """The literal strings a secret can become through filters and encoders."""
    forms: set[str] = set()
    for text in (secret, secret[::-1]):
        forms |= {
            text,
            quote(text, safe=""),
            quote(text, safe="/"),
            quote_plus(text),
            html.escape(text),
            html.escape(text).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            _html_safe_json(text),
            "".join(f"\\u{ord(c):04x}" for c in text),
            text.encode().hex(),
            base64.b32encode(text.encode()).decode().rstrip("="),
        }
        forms |= _base64_forms(text.encode())
    return {f for f in forms if f}


def _html_safe_json(text: str) -> str:
    """JSON as Jinja's `tojson` writes it, with <, >, & and ' escaped."""
    escaped = json.dumps(text)[1:-1]
    for char in "<>&'":
        escaped = escaped.replace(char, f"\\u{ord(char):04x}")
    return escaped


def _base64_forms(data: bytes) -> set[str]:
    """Base64 of `data`, and the parts of it that do not depend on bytes around it."""
    out = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        start = -(-8 * offset // 6)  # the first character made only of `data`'s bits
        end = (8 * (offset + len(data))) // 6
        piece = encoded[start:end]
        if offset == 0:
            out.add(encoded.rstrip("="))
        if len(piece) >= _B64_MIN or (offset == 0 and piece):
            out |= {piece, piece.replace("+", "-").replace("/", "_")}
    return out


def _patterns(secret: str, *, whole_word: bool) -> list[str]:
    """Regular expressions (case-insensitive) for one secret in all its forms; with
    ``whole_word``, only as written or encoded, where no letter or digit stands next to it."""
    literal = sorted(encoded_forms(secret), key=len, reverse=True)
    if whole_word:
        return [_whole_word(form) for form in literal]
    patterns = [re.escape(f) for f in literal]
    if len(secret) < _FUZZY_MIN:
        return patterns
    for n, text in enumerate((secret, secret[::-1])):
        chars = [re.escape(c) for c in text]
        # Its letters and digits with any punctuation or spaces around them, whatever
        # punctuation it had: `|list|join(' ')`, `|list`, `|replace('-', '_')`...
        alnum = [re.escape(c) for c in text if c.isalnum()]
        if len(alnum) >= _FUZZY_MIN:
            patterns.append(_SEPARATOR.join(alnum))
        # The same separator, whatever it is, between every two characters: `join('x')`.
        sep = f"sep{n}"
        patterns.append(chars[0] + f"(?P<{sep}>.{{1,8}}?)" + f"(?P={sep})".join(chars[1:]))
    return patterns


def _whole_word(form: str) -> str:
    """A pattern for ``form`` where it is not part of a longer word."""
    before = _NOT_AFTER_WORD if form[0].isalnum() else ""
    after = _NOT_BEFORE_WORD if form[-1].isalnum() else ""
    return before + re.escape(form) + after


class Redactor:
    """The secrets of one task run, and the scrubbing of them out of text and JSON values."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        self._regexes: list[re.Pattern[str]] = []
        self._lock = threading.Lock()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None, *, whole_word: bool = False) -> None:
        """Scrub `secret` from now on (empty and None are ignored).

        ``whole_word`` is for a one-time code: six random digits, worthless once used. Matched
        in all the forms of a stored secret, with separators between its digits and inside
        longer numbers, a code of 202503 masked the date 2025-03-20 in a task's result and
        250012 the "25.00, 12" of "$25.00, 12 visits". A password stays masked wherever it
        shows, even glued to other text.
        """
        if not secret or secret in self._secrets:
            return
        # One regex per secret: its `sep` group name must not clash with another secret's.
        patterns = _patterns(secret, whole_word=whole_word)
        regex = re.compile("|".join(f"(?:{p})" for p in patterns), re.I | re.S)
        with self._lock:
            self._secrets.add(secret)
            # A new list, swapped in whole: other threads (log records) may be reading the old.
            # Longer secrets first, so one containing another is masked whole.
            self._regexes = sorted(
                [*self._regexes, regex], key=lambda r: len(r.pattern), reverse=True
            )

    def text(self, text: str) -> str:
        """`text` with every form of every secret replaced by ***."""
        for regex in self._regexes:
            text = regex.sub(MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) scrubbed."""
        if isinstance(value, str):
            scrubbed = self.text(value)
            return value if scrubbed == value else scrubbed  # keeps str subclasses (names)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


# --- logs ----------------------------------------------------------------------------------

# Replaced whole under the lock, read without it (one reference read is atomic).
_active: tuple[Redactor, ...] = ()
_active_lock = threading.Lock()
_installed = False


@contextmanager
def active(redactor: Redactor) -> Iterator[Redactor]:
    """While inside, every log record this process makes is scrubbed of `redactor`'s secrets.

    Done in the log record factory, not in a handler's filter, so it holds for every handler
    (an operator's, a test's) and for libraries that log what they send, at any level.
    """
    global _active
    _install()
    with _active_lock:
        _active = (*_active, redactor)
    try:
        yield redactor
    finally:
        with _active_lock:
            _active = tuple(r for r in _active if r is not redactor)


def _install() -> None:
    global _installed
    with _active_lock:
        if _installed:
            return
        base = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            redactors = _active
            if redactors:
                _scrub_record(record, redactors)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _scrub_record(record: logging.LogRecord, redactors: tuple[Redactor, ...]) -> None:
    def scrub(text: str) -> str:
        for redactor in redactors:
            text = redactor.text(text)
        return text

    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep what there is, scrubbed
        message = f"{record.msg} {record.args}"
    record.msg, record.args = scrub(message), ()
    if record.exc_info and not record.exc_text:
        # Formatters use exc_text when it is set, so the traceback is written scrubbed.
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


def scrub_fields(record: logging.LogRecord, names: Iterable[str]) -> None:
    """Scrub the named attributes of a record (the fields passed with ``extra=``, which are set
    after the record factory ran) of the active runs' secrets."""
    redactors = _active
    if not redactors:
        return
    for name in names:
        value = record.__dict__.get(name)
        if isinstance(value, str | dict | list | tuple):
            for redactor in redactors:
                value = redactor.value(value)
            record.__dict__[name] = value
