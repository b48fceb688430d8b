"""Portal profiles: what is the same for every task on one payer portal (docs/portals.md).

A profile is a YAML document: the portal's address, how to sign in, how to recognise its sign-in
page (stated explicitly, never guessed from a label), its error pages, pop-ups to close, and the
steps every task on it runs first. `load_profile(text)` validates it strictly, reporting every
problem with its line as SOPs do; it is parsed by the same bounded YAML loader and its steps,
locators and conditions by the same validator as an SOP's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from shared.sop.errors import SopLimitExceeded
from shared.sop.loader import SopLimits, load_document
from shared.sop.model import (
    InputSpec,
    Locator,
    LoginStep,
    PortalErrorPattern,
    ReviewStep,
    Step,
    describe_condition,
    flatten,
    summarise_steps,
)
from shared.sop.validate import Validator
from shared.ssrf import UrlRefused, origin_of

SANDBOX_PORTAL = "sandbox"
PORTAL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PORTAL_NAME_RULE = "1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
MAX_ALLOWED_ORIGINS = 20
MAX_SESSIONS_LIMIT = 100
DEFAULT_SIGN_IN_TIMEOUT_S = 10.0

_TOP_KEYS = (
    "portal",
    "title",
    "description",
    "base_url",
    "allowed_origins",
    "sign_in",
    "sign_out",
    "max_sessions",
    "session_expired",
    "errors",
    "dismiss",
    "inputs",
    "prelude",
)
_SIGN_IN_KEYS = (
    "url", "page", "username", "password", "button", "mfa", "success", "in_use", "timeout_s",
)  # fmt: skip
_EXPIRY_KINDS = ("visible", "url_contains", "text")


@dataclass(frozen=True)
class PageRule:
    """How to recognise one page: an address pattern, a locator only it matches, or both."""

    url: str | None = None  # regular expression, searched in the full address
    shows: Locator | None = None

    def describe(self) -> str:
        parts = []
        if self.url:
            parts.append(f"its address matches {self.url!r}")
        if self.shows:
            parts.append(f"it shows {self.shows.describe()}")
        return " and ".join(parts)


@dataclass(frozen=True)
class SignIn:
    """The portal's sign-in: where, which fields and buttons, and how to tell its page."""

    url: str
    page: PageRule
    username: Locator
    password: Locator | None  # None: a sign-in without a password (a one-time code instead)
    button: Locator
    code: Locator | None = None
    code_button: Locator | None = None
    code_page: PageRule | None = None
    success: dict[str, Any] | None = None
    # Signs that a refused sign-in means "this user is signed in elsewhere", not bad credentials.
    in_use: tuple[dict[str, Any], ...] = ()
    timeout_s: float = DEFAULT_SIGN_IN_TIMEOUT_S


@dataclass(frozen=True)
class SignOut:
    """How to end the portal session a task holds: open ``url``, or click ``click``."""

    url: str | None = None
    click: Locator | None = None

    def describe(self) -> str:
        if self.url:
            return f"open {self.url}"
        return f"click {self.click.describe()}" if self.click else ""


@dataclass(frozen=True)
class Profile:
    """A validated portal profile."""

    portal: str
    title: str
    description: str
    base_url: str | None
    allowed_origins: tuple[str, ...]
    sign_in: SignIn | None
    sign_out: SignOut | None
    # How many sessions one user may hold at once (None: no limit). The worker runs at most this
    # many of one account's tasks on the portal at once; the others wait (shared.tasks).
    max_sessions: int | None
    session_expired: tuple[dict[str, Any], ...]
    errors: tuple[PortalErrorPattern, ...]
    dismiss: tuple[Locator, ...]
    inputs: tuple[InputSpec, ...]
    prelude: tuple[Step, ...]
    source: str = ""

    def all_steps(self) -> list[Step]:
        """Every prelude step, nested ones included."""
        return flatten(self.prelude)

    def summary(self) -> str:
        """A human-readable description of what every task on the portal does first."""
        lines = [f"{self.title} (portal '{self.portal}')."]
        if self.description:
            lines.append(self.description)
        if self.base_url:
            lines.append(f"Address: {self.base_url}.")
        if self.sign_in:
            lines.append(
                f"Sign in at {self.sign_in.url}"
                + (" (with a one-time code if asked)" if self.sign_in.code else "")
                + f"; the sign-in page is the one where {self.sign_in.page.describe()}."
            )
        if self.sign_in and self.sign_in.in_use:
            signs = " or ".join(describe_condition(cond) for cond in self.sign_in.in_use)
            lines.append(
                f"A sign-in refused showing {signs} means the user is signed in elsewhere:"
                " tasks wait for that session to end."
            )
        if self.sign_out:
            lines.append(
                f"After each task, sign out ({self.sign_out.describe()}): no session is kept"
                " between tasks."
            )
        if self.max_sessions:
            sessions = f"{self.max_sessions} session" + ("s" if self.max_sessions > 1 else "")
            lines.append(
                f"One user may hold {sessions} at once: at most that many of an account's tasks"
                " run on it at the same time."
            )
        for cond in self.session_expired:
            lines.append(f"The session has also ended when {describe_condition(cond)} shows.")
        if self.dismiss:
            closed = ", ".join(d.describe() for d in self.dismiss)
            lines.append(f"Close if shown: {closed}.")
        if self.inputs:
            lines.append("Inputs: " + "; ".join(i.describe() for i in self.inputs) + ".")
        if self.prelude:
            lines.append("First, on every task:")
            # Numbered p1, p2... as the trajectory names them.
            steps = summarise_steps(self.prelude, prefix="")
            lines += [re.sub(r"^(\s*)(\d)", r"\1p\2", line) for line in steps]
        return "\n".join(lines)


def load_profile(text: str, limits: SopLimits | None = None) -> Profile:
    """Parse and strictly validate a profile; raise SopInvalid listing every problem."""
    limits = limits or SopLimits()
    profile = load_document(text, limits, _ProfileValidator, _ProfileValidator.profile)
    if (n := len(flatten(profile.prelude))) > limits.steps:
        raise SopLimitExceeded(
            "MAX_SOP_STEPS",
            limits.steps,
            f"the prelude has {n} steps; MAX_SOP_STEPS is {limits.steps}",
        )
    return profile


def _library() -> Traversable:
    return resources.files("shared.sop.library").joinpath("portals")


def builtin_portals() -> tuple[str, ...]:
    """The portals with a built-in profile: one ``<portal>.yaml`` each in the library."""
    return tuple(sorted(f.name[:-5] for f in _library().iterdir() if f.name.endswith(".yaml")))


BUILTIN_PORTALS = builtin_portals()


def builtin_profile_text(portal: str) -> str:
    """The YAML text of a built-in profile (KeyError if there is none)."""
    if portal not in BUILTIN_PORTALS:
        raise KeyError(f"no built-in profile for portal {portal!r}")
    return _library().joinpath(f"{portal}.yaml").read_text("utf-8")


@lru_cache(maxsize=8)
def builtin_profile(portal: str) -> Profile:
    """A built-in profile, validated (KeyError if there is none)."""
    return load_profile(builtin_profile_text(portal))


class _ProfileValidator(Validator):
    """The SOP validator (steps, locators, conditions, inputs) plus a profile's own keys."""

    def profile(self, data: Any, text: str) -> Profile | None:
        if not isinstance(data, dict):
            self.err("", "the document must be a mapping with portal, title, sign_in...")
            return None
        self.mapping(data, "", _TOP_KEYS)
        for required in ("portal", "title"):
            if required not in data:
                self.err(required, f"'{required}' is required")
        portal = self.string(data.get("portal", ""), "portal")
        if portal and not PORTAL_NAME.fullmatch(portal):
            self.err("portal", f"must be a portal name: {PORTAL_NAME_RULE}")
        inputs = self.inputs(data.get("inputs", []), "inputs")
        self.sensitive = {key: i.name for i in inputs if i.sensitive for key in i.keys}
        for spec in inputs:
            if spec.sensitive:
                self.err("inputs", f"'{spec.name}': a profile's inputs cannot be sensitive")
        prelude = self.steps(data.get("prelude", []), "prelude")
        self.check_prelude(prelude)
        dismiss = [
            self.locator(item, f"dismiss[{i}]")
            for i, item in enumerate(self.sequence(data.get("dismiss", []), "dismiss"))
        ]
        return Profile(
            portal=portal,
            title=self.string(data.get("title", ""), "title"),
            description=self.string(data.get("description", ""), "description").strip(),
            base_url=self.base_url(data.get("base_url")),
            allowed_origins=self.allowed_origins(data.get("allowed_origins", [])),
            sign_in=self.sign_in(data["sign_in"], "sign_in") if "sign_in" in data else None,
            sign_out=self.sign_out(data["sign_out"], "sign_out") if "sign_out" in data else None,
            max_sessions=self.max_sessions(data.get("max_sessions")),
            session_expired=self.signs(data.get("session_expired", []), "session_expired"),
            errors=self.portal_errors(data.get("errors", []), "errors"),
            dismiss=tuple(d for d in dismiss if d) + tuple(self.dismiss),
            inputs=inputs,
            prelude=prelude,
            source=text,
        )

    def base_url(self, value: Any) -> str | None:
        if value is None:
            return None
        url = self.string(value, "base_url").strip()
        if not re.match(r"https?://[^/]", url, re.I):
            self.err("base_url", "must be an http:// or https:// address")
        return url

    def allowed_origins(self, value: Any) -> tuple[str, ...]:
        items = self.sequence(value, "allowed_origins")
        if len(items) > MAX_ALLOWED_ORIGINS:
            self.err("allowed_origins", f"at most {MAX_ALLOWED_ORIGINS} origins")
        out = []
        for i, item in enumerate(items):
            path = f"allowed_origins[{i}]"
            url = self.string(item, path)
            try:
                out.append(origin_of(url))
            except UrlRefused as err:
                self.err(path, f"{url!r} is not an origin: {err}")
        return tuple(sorted(set(out)))

    def page_rule(self, value: Any, path: str) -> PageRule:
        m = self.mapping(value, path, ("url", "shows"))
        if isinstance(value, dict) and not ({"url", "shows"} & value.keys()):
            self.err(path, "give url (a regular expression of the address), shows, or both")
        url = self.string(m["url"], f"{path}.url") if "url" in m else None
        if url is not None:
            self.pattern(url, f"{path}.url")
        shows = self.locator(m["shows"], f"{path}.shows") if "shows" in m else None
        return PageRule(url=url, shows=shows)

    def required_locator(self, m: dict, key: str, path: str) -> Locator:
        if key not in m:
            self.err(path, f"'{key}' (a locator) is required")
            return Locator("label", "")
        return self.locator(m[key], f"{path}.{key}") or Locator("label", "")

    def sign_in(self, value: Any, path: str) -> SignIn | None:
        m = self.mapping(value, path, _SIGN_IN_KEYS)
        if not m:
            return None
        url = self.string(m.get("url", "/login"), f"{path}.url", template=True)
        self.page_url(url, f"{path}.url")
        if "page" not in m:
            self.err(
                path,
                "'page' is required: how to recognise the sign-in page (url, shows, or both)",
            )
        page = self.page_rule(m.get("page", {"url": ""}), f"{path}.page")
        code = code_button = code_page = None
        if "mfa" in m:
            mfa = self.mapping(m["mfa"], f"{path}.mfa", ("code", "button", "page"))
            code = self.required_locator(mfa, "code", f"{path}.mfa")
            code_button = self.required_locator(mfa, "button", f"{path}.mfa")
            if "page" in mfa:
                code_page = self.page_rule(mfa["page"], f"{path}.mfa.page")
        timeout = m.get("timeout_s")
        return SignIn(
            url=url,
            page=page,
            username=self.required_locator(m, "username", path),
            password=self.locator(m["password"], f"{path}.password") if "password" in m else None,
            button=self.required_locator(m, "button", path),
            code=code,
            code_button=code_button,
            code_page=code_page,
            success=self.condition(m["success"], f"{path}.success") if "success" in m else None,
            in_use=self.signs(m.get("in_use", []), f"{path}.in_use"),
            timeout_s=(
                self.seconds(timeout, f"{path}.timeout_s")
                if timeout is not None
                else DEFAULT_SIGN_IN_TIMEOUT_S
            ),
        )

    def sign_out(self, value: Any, path: str) -> SignOut | None:
        m = self.mapping(value, path, ("url", "click"))
        if len([key for key in ("url", "click") if key in m]) != 1:
            self.err(path, "give exactly one of url (a page that signs out) or click (a locator)")
            return None
        if "url" in m:
            url = self.string(m["url"], f"{path}.url", template=True)
            self.page_url(url, f"{path}.url")
            return SignOut(url=url)
        return SignOut(click=self.locator(m["click"], f"{path}.click"))

    def max_sessions(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.err("max_sessions", "must be a whole number of sessions")
            return None
        if not 1 <= value <= MAX_SESSIONS_LIMIT:
            self.err("max_sessions", f"must be from 1 to {MAX_SESSIONS_LIMIT}")
            return None
        return value

    def signs(self, value: Any, where: str) -> tuple[dict[str, Any], ...]:
        """A list of signs on a page (``session_expired``, ``sign_in.in_use``): conditions of
        one of ``visible``, ``url_contains`` or ``text`` each."""
        out = []
        for i, item in enumerate(self.sequence(value, where)):
            path = f"{where}[{i}]"
            m = self.mapping(item, path, _EXPIRY_KINDS)
            if len([k for k in _EXPIRY_KINDS if k in m]) != 1:
                self.err(path, f"give exactly one of {', '.join(_EXPIRY_KINDS)}")
                continue
            out.append(self.condition(m, path))
        return tuple(out)

    def check_prelude(self, prelude: tuple[Step, ...]) -> None:
        for step in flatten(prelude):
            if step.irreversible:
                self.err(step.path, "a prelude step cannot be irreversible")
            if isinstance(step, LoginStep):
                self.err(step.path, "the prelude runs after sign_in: it cannot sign in itself")
            if isinstance(step, ReviewStep):
                self.err(
                    step.path,
                    "the prelude runs before every task on the portal: a review would pause each"
                    " of them; put it in the SOP, before the step it guards",
                )
