"""The redactor: a secret is scrubbed in every form a template filter or an encoder gives it."""

from __future__ import annotations

import base64
import logging

import pytest

from shared import redaction
from shared.redaction import MASK, Redactor
from shared.sop.expressions import render

SECRET = "Tr0ub4dor&3-horse"

# What an SOP's notes could make of a secret, through the real sandboxed template environment.
FILTERED = [
    "{{ s }}",
    "{{ s | reverse }}",
    "{{ s | upper }}",
    "{{ s | lower }}",
    "{{ s | title }}",
    "{{ s | capitalize }}",
    "{{ s | reverse | upper }}",
    "{{ s | urlencode }}",
    "{{ s | escape }}",
    "{{ s | tojson }}",
    "{{ s | list }}",
    "{{ s | list | tojson }}",
    "{{ s | list | join('-') }}",
    "{{ s | list | join(' ') }}",
    "{{ s | list | join('xy') }}",
    "{{ s | reverse | list | join(',') }}",
    "{{ s | replace('-', '_') }}",
    "{{ s | center(60) }}",
    "{{ s | list | map('upper') | join('/') }}",
]


@pytest.mark.parametrize("template", FILTERED)
def test_every_filtered_form_of_a_secret_is_scrubbed(template):
    # given notes that pass the secret through filters
    notes = render(f"Done: {template}. Thanks", {"s": SECRET})
    # when they are scrubbed
    scrubbed = Redactor([SECRET]).text(notes)
    # then the secret's form is gone and the text around it is kept
    assert scrubbed.startswith("Done: ") and scrubbed.endswith(". Thanks")
    assert MASK in scrubbed
    assert not any(c in scrubbed for c in ("Tr0", "0ub", "horse", "HORSE", "esroh"))


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        base64.b64encode(b"user:" + SECRET.encode()).decode(),  # inside a longer value
        base64.b64encode(b"ab" + SECRET.encode() + b"cd").decode(),
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
        base64.b32encode(SECRET.encode()).decode(),
        "".join(f"\\u{ord(c):04x}" for c in SECRET),
    ],
)
def test_encoded_forms_are_scrubbed(encoded):
    text = f"value={encoded};"
    scrubbed = Redactor([SECRET]).text(text)
    assert MASK in scrubbed
    # what is left is the encoding of the bytes around the secret, not the secret's
    assert len(scrubbed) <= len(text) - len(SECRET)


def test_ordinary_text_and_other_values_are_left_alone():
    redactor = Redactor(["sandbox-pass-1", "JBSWY3DPEHPK3PXP", None, ""])
    text = "Coverage active for Jane Doe (W100000001): plan Sandbox Gold PPO, copay $25.00."
    assert redactor.text(text) == text
    value = {"plan": "Sandbox Gold PPO", "n": 3, "rows": [{"pw": "sandbox-pass-1"}]}
    assert redactor.value(value) == {"plan": "Sandbox Gold PPO", "n": 3, "rows": [{"pw": MASK}]}


def test_log_records_are_scrubbed_only_while_the_run_is_active(caplog):
    log = logging.getLogger("tests.redaction")
    caplog.set_level(logging.DEBUG)
    redactor = Redactor([SECRET])
    # given a library that logs what it sends, and an error whose message holds the secret
    with redaction.active(redactor):
        log.debug("POST /element/value %s", {"text": SECRET})
        try:
            raise ValueError(f"could not type {SECRET[::-1]}")
        except ValueError:
            log.exception("typing failed")
    # then neither the message nor the traceback has it
    assert SECRET not in caplog.text and SECRET[::-1] not in caplog.text
    assert caplog.text.count(MASK) >= 2
    # and once the run is over, logging is untouched
    caplog.clear()
    log.info("after %s", "the run")
    assert caplog.records[-1].getMessage() == "after the run"


def _codes(code: str) -> Redactor:
    """A run's redactor once the one-time code ``code`` was typed (as the sign-in adds it)."""
    redactor = Redactor([SECRET])
    redactor.add(code, whole_word=True)
    return redactor


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("202503", "Coverage active; service date 2025-03-20, billed $125.00."),
        ("250012", "Copay $25.00, 12 visits a year."),
        ("100000", "Member W100000001, claim CLM-1000001."),
    ],
)
def test_a_one_time_code_leaves_a_date_or_an_amount_it_is_only_a_piece_of_alone(code, text):
    # a one-time code is six random digits: with separators allowed between them, or as a
    # piece of a longer number, it matched a date or an amount of an eligibility or a claim's
    # notes in about one task in 16,000, and masked it
    assert _codes(code).text(text) == text


@pytest.mark.parametrize(
    "shown",
    [
        "Your code is {}.",
        "/mfa?code={}&next=1",
        "code:{}",
        '{{"otp": "{}"}}',
    ],
)
def test_a_one_time_code_is_masked_where_it_stands_as_a_word(shown):
    code = "250012"
    for form in (code, code[::-1], base64.b64encode(code.encode()).decode().rstrip("=")):
        assert _codes(code).text(shown.format(form)) == shown.format(MASK)


def test_a_short_password_is_masked_even_glued_to_other_text():
    # a portal may print the password back inside other text; a password is masked wherever
    # it shows, whatever the cost to the text around it
    assert Redactor(["p-4242"]).text("aaap-4242bbb and pw p-4242") == "aaa***bbb and pw ***"
