"""The portal profile document: the documented examples load, and its own rules hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.sop.errors import SopInvalid
from shared.sop.loader import load_sop
from shared.sop.profile import builtin_profile, load_profile

ROOT = Path(__file__).resolve().parents[2]


def _yaml_blocks(path: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", (ROOT / path).read_text(), re.S | re.M)


def test_the_documented_sandbox_profile_is_the_builtin_one() -> None:
    documented = load_profile(_yaml_blocks("docs/portals.md")[0])
    builtin = builtin_profile("sandbox")
    # the same document but for comments (which move the steps' lines)
    for name in ("sign_in", "errors", "dismiss", "inputs", "session_expired", "base_url"):
        assert getattr(documented, name) == getattr(builtin, name), name
    assert documented.summary() == builtin.summary()


def test_the_documented_sop_on_the_profile_is_valid() -> None:
    sop = load_sop(_yaml_blocks("docs/portals.md")[1])
    assert sop.portal == "sandbox" and not any(s.kind == "login" for s in sop.all_steps())


def test_the_readme_profile_example_is_valid() -> None:
    [block] = [b for b in _yaml_blocks("README.md") if b.startswith("portal: acme")]
    profile = load_profile(block)
    assert profile.sign_in is not None and profile.sign_in.page.url == "/signin"


BASE = """\
portal: acme
title: Acme
sign_in:
  page: {url: /signin}
  username: {label: Email}
  password: {label: Password}
  button: {button: Continue}
"""


@pytest.mark.parametrize(
    ("extra", "line", "path", "message"),
    [
        ("prelude:\n  - login: {url: /x}\n", 9, "prelude[0].login", "cannot sign in itself"),
        (
            "prelude:\n  - click: {button: Go}\n    irreversible: true\n",
            9,
            "prelude[0].click",
            "cannot be irreversible",
        ),
        ("prelude:\n  - review: Payer chosen\n", 9, "prelude[0].review", "pause each of them"),
        ("inputs:\n  - {name: pin, sensitive: true}\n", 8, "inputs", "cannot be sensitive"),
        ("allowed_origins: [https://a.test/path]\n", 8, "allowed_origins[0]", "not an origin"),
        ("base_url: ftp://acme.test\n", 8, "base_url", "http:// or https://"),
        ("session_expired:\n  - {gone: {text: x}}\n", 9, "session_expired[0]", "exactly one"),
        ("colour: blue\n", 8, "colour", "unknown key 'colour'"),
        ("sign_out: {}\n", 8, "sign_out", "exactly one of url"),
        ("sign_out: {url: /out, click: {button: Out}}\n", 8, "sign_out", "exactly one of url"),
        ("sign_out: {url: ftp://x}\n", 8, "sign_out.url", "only the portal's http(s) pages"),
    ],
)
def test_a_profiles_own_rules_name_the_line(extra: str, line: int, path: str, message: str):
    with pytest.raises(SopInvalid) as raised:
        load_profile(BASE + extra)
    [error] = [e for e in raised.value.errors if e["path"] == path]
    assert message in error["message"] and error["line"] == line


def test_a_portal_name_must_be_a_name() -> None:
    with pytest.raises(SopInvalid) as raised:
        load_profile(BASE.replace("portal: acme", "portal: Acme Health"))
    assert raised.value.errors[0]["path"] == "portal" and raised.value.errors[0]["line"] == 1


def test_sign_out_and_in_use_are_read_and_summarised() -> None:
    profile = load_profile(
        BASE.replace(
            "  button: {button: Continue}\n",
            "  button: {button: Continue}\n  in_use:\n    - {text: already signed in}\n",
        )
        + "max_sessions: 1\nsign_out: {click: {link: Sign out}}\n"
    )
    assert profile.sign_in is not None
    assert [sign["text"] for sign in profile.sign_in.in_use] == ["already signed in"]
    assert profile.sign_out is not None and profile.sign_out.click is not None
    assert "After each task, sign out (click" in profile.summary()
    assert "means the user is signed in elsewhere" in profile.summary()
    by_url = load_profile(BASE + "sign_out: {url: /logout}\n").sign_out
    assert by_url is not None and by_url.url == "/logout"


def test_an_in_use_sign_is_one_condition() -> None:
    with pytest.raises(SopInvalid) as raised:
        load_profile(
            BASE.replace(
                "  button: {button: Continue}\n",
                "  button: {button: Continue}\n  in_use: [{gone: {text: x}}]\n",
            )
        )
    [error] = [e for e in raised.value.errors if e["path"] == "sign_in.in_use[0]"]
    assert "exactly one" in error["message"] and error["line"] == 8
