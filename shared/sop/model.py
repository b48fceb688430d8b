"""The validated SOP document: its parts, and one frozen dataclass per step kind.

A step kind is a subclass of :class:`Step` with a ``kind`` (its YAML key), its own fields, a
``parse`` classmethod (YAML value -> fields, reporting problems to the validator) and a
``describe`` method (a sentence for the task's instructions). Defining the subclass registers
it in :data:`STEP_TYPES`; the worker's agent registers one handler per kind
(``worker/agent/``). A parity test checks that the two sides pair up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from shared import inputs as inputs_mod
from shared.redaction import Redactor
from shared.sop import patterns
from shared.sop.expressions import strip_braces

if TYPE_CHECKING:
    from shared.sop.validate import Validator


class OutcomeStatus(StrEnum):
    """Final statuses an SOP's outcome rules may give."""

    COMPLETED = "completed"
    COMPLETED_WITH_ISSUES = "completed_with_issues"
    FAILED = "failed"


class Screenshots(StrEnum):
    """When the engine records a screenshot with a step."""

    EVERY_STEP = "every_step"
    FAILURES = "failures"


# How a step answers the page's dialogs: "accept" presses OK (an alert's only button),
# "dismiss" presses Cancel (a confirm() returns false, a prompt() null).
DIALOG_ANSWERS = ("accept", "dismiss")


# --- locators ------------------------------------------------------------------------------

LOCATOR_KINDS = ("css", "xpath", "label", "button", "link", "role", "text")
LOCATOR_OPTIONS = ("name", "nth", "within", "match", "case")
# How a locator compares text: by default letter case is ignored ("opsadmin" finds "OPSADMIN").
LETTER_CASES = ("insensitive", "sensitive")


@dataclass(frozen=True)
class Locator:
    """How to find one element: a kind (label, button, role...) and its text, maybe narrowed."""

    kind: str
    value: str
    name: str | None = None  # accessible name, with kind "role"
    nth: int | None = None  # 1-based among the matches; default the first
    within: Locator | None = None
    match: str | None = None  # "exact" or "contains"; default exact, but contains for text
    case: str | None = None  # "sensitive" compares letter case too; default insensitive

    def describe(self) -> str:
        """Human wording, e.g. 'field "Member ID"' or 'button "Dismiss" in dialog'."""
        noun = {"label": "field", "button": "button", "link": "link", "text": "text"}.get(self.kind)
        if noun:
            text = f'{noun} "{self.value}"'
        elif self.kind == "role":
            text = f'{self.value} "{self.name}"' if self.name else self.value
        else:
            text = f"{self.kind} `{self.value}`"
        if self.match == "contains" and self.kind != "text":
            text += " (partial match)"
        if self.case == "sensitive":
            text += " (same letter case)"
        if self.nth:
            text += f" #{self.nth}"
        if self.within:
            text += f" in {self.within.describe()}"
        return text


VALUE_TEST_REFUSED = (
    "a css or xpath locator may not test what a field holds (its value attribute), so that a "
    "typed secret cannot be guessed; find the field by label, role or text"
)
# Selectors that test an input's value attribute, which a portal may fill with what was typed:
# `[value^=a]` in CSS; `@value`, `@*` or the attribute axis in XPath.
_VALUE_TESTS = {
    "css": re.compile(r"\[\s*(?:[\w*-]*\|)?value\b", re.I),
    "xpath": re.compile(r"@\s*(?:value\b|\*|node\s*\()|attribute\s*::\s*(?:value\b|\*|node)", re.I),
}


def selector_tests_value(kind: str, selector: str) -> bool:
    """Whether a css or xpath selector tests an input's value attribute (escapes resolved).

    Checked when an SOP is loaded, and again by the agent once templates are filled in.
    """
    pattern = _VALUE_TESTS.get(kind)
    return pattern is not None and pattern.search(_css_unescape(selector)) is not None


def _css_unescape(text: str) -> str:
    """CSS with its escapes (`\\76 alue`, `\\v`) resolved, so they cannot hide a name."""

    def char(m: re.Match[str]) -> str:
        code = int(m[1], 16)
        return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"

    text = re.sub(r"\\([0-9a-fA-F]{1,6})\s?", char, text)
    return re.sub(r"\\(.)", r"\1", text)


def describe_condition(cond: Mapping[str, Any]) -> str:
    """A wait condition ({visible: ...}, {text: ...}, {any_of: [...]}...) in words."""
    if "any_of" in cond:
        return " or ".join(describe_condition(c) for c in cond["any_of"])
    if "visible" in cond:
        return cond["visible"].describe()
    if "gone" in cond:
        return f"{cond['gone'].describe()} to disappear"
    if "text" in cond:
        cased = " (same letter case)" if cond.get("case") == "sensitive" else ""
        return f"the text {_q(cond['text'])}{cased}"
    return f"the address to contain {_q(cond['url_contains'])}"


def _q(value: Any) -> str:
    return f'"{value}"'


# --- steps ---------------------------------------------------------------------------------

# Every step kind by its YAML key, in the order the language documents them.
STEP_TYPES: dict[str, type[Step]] = {}


@dataclass(frozen=True, kw_only=True)
class Step:
    """What every step has. Each kind adds its fields, ``parse`` and ``describe``."""

    kind: ClassVar[str]
    # Keys a step of this kind may have beside its action key (`then`, `do`...).
    siblings: ClassVar[tuple[str, ...]] = ()

    path: str
    line: int | None = None
    name: str | None = None
    timeout_s: float | None = None
    irreversible: bool = False
    optional: bool = False
    when: str | None = None
    dialogs: str | None = None  # one of DIALOG_ANSWERS; None: as the step around it, or the SOP
    steps: tuple[Step, ...] = ()  # `then` of if, `do` of loops
    else_steps: tuple[Step, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            STEP_TYPES[cls.kind] = cls

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        """The kind's fields from its YAML value; problems go to ``v.err``.

        ``path`` is the action key's path (``steps[2].click``), ``item`` the whole step mapping.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """A description generated from the step's fields."""
        raise NotImplementedError

    def title(self) -> str:
        """The step's name, or a description generated from its fields."""
        return self.name or self.describe()


@dataclass(frozen=True, kw_only=True)
class LoginStep(Step):
    """Sign in with the stored credentials, entering a one-time code if asked."""

    kind: ClassVar[str] = "login"

    url: str = "/login"
    username_label: str = "Username"
    password_label: str = "Password"  # noqa: S105 (a label, not a password)
    button: str = "Sign in"
    code_label: str = "One-time code"
    code_button: str = "Verify"
    success: dict[str, Any] | None = None

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        labels = ("username_label", "password_label", "button", "code_label", "code_button")
        m = v.mapping(value if value is not None else {}, path, ("url", *labels, "success"))
        login_url = v.string(m.get("url", DEFAULT_LOGIN.url), f"{path}.url", template=True)
        v.page_url(login_url, f"{path}.url")
        fields = {"url": login_url}
        for key in labels:
            fields[key] = v.string(m.get(key, getattr(DEFAULT_LOGIN, key)), path)
        success = v.condition(m["success"], f"{path}.success") if "success" in m else None
        return {**fields, "success": success}

    def describe(self) -> str:
        return "Sign in to the portal (enter a one-time code if asked)"


# The sign-in an SOP without a login step gets when its session expires and its portal has no
# profile (as before profiles).
DEFAULT_LOGIN = LoginStep(path="")


@dataclass(frozen=True, kw_only=True)
class GotoStep(Step):
    """Open a page of the portal."""

    kind: ClassVar[str] = "goto"

    url: str

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(value, dict):
            v.mapping(value, path, ("url",))
        url = v.string(url, path, template=True)
        v.page_url(url, path)
        return {"url": url}

    def describe(self) -> str:
        return f"Go to {self.url}"


@dataclass(frozen=True, kw_only=True)
class FillStep(Step):
    """Type text (or a sensitive input) into a field; a <select> gets the option chosen."""

    kind: ClassVar[str] = "fill"

    locator: Locator  # None only in a document that is refused
    value: str
    secret: str | None = None
    clear: bool = True

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        fields, m = v.located(value, path, ("value", "secret", "clear"), ())
        if isinstance(value, dict) and ("value" in m) == ("secret" in m):
            v.err(path, "give 'value' (text) or 'secret' (a sensitive input's name)")
        fields["value"] = v.string(m.get("value", ""), f"{path}.value", template=True)
        fields["secret"] = None
        if "secret" in m:
            secret = v.string(m["secret"], f"{path}.secret")
            if secret not in v.sensitive.values():
                v.err(f"{path}.secret", f"'{secret}' is not a declared sensitive input")
            fields["secret"] = secret
        fields["clear"] = v.boolean(m.get("clear", True), f"{path}.clear")
        return fields

    def describe(self) -> str:
        if self.secret:
            return f"Type the sensitive input `{self.secret}` into {_where(self.locator)}"
        return f"Fill {_where(self.locator)} with {_q(self.value)}"


@dataclass(frozen=True, kw_only=True)
class SelectStep(Step):
    """Choose an option in a list (a <select> or a custom combobox)."""

    kind: ClassVar[str] = "select"

    locator: Locator  # None only in a document that is refused
    option: str

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        fields, m = v.located(value, path, ("option",), ("option",))
        fields["option"] = v.string(m.get("option", ""), f"{path}.option", template=True)
        return fields

    def describe(self) -> str:
        return f"Choose {_q(self.option)} in {_where(self.locator)}"


@dataclass(frozen=True, kw_only=True)
class CheckStep(Step):
    """Tick or untick a checkbox."""

    kind: ClassVar[str] = "check"

    locator: Locator  # None only in a document that is refused
    checked: bool = True

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        fields, m = v.located(value, path, ("checked",), ())
        fields["checked"] = v.boolean(m.get("checked", True), f"{path}.checked")
        return fields

    def describe(self) -> str:
        return f"{'Tick' if self.checked else 'Untick'} {_where(self.locator)}"


@dataclass(frozen=True, kw_only=True)
class ClickStep(Step):
    """Click an element."""

    kind: ClassVar[str] = "click"

    locator: Locator  # None only in a document that is refused

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        return v.located(value, path, (), ())[0]

    def describe(self) -> str:
        return f"Click {_where(self.locator)}"


@dataclass(frozen=True, kw_only=True)
class UploadStep(Step):
    """Attach task files to a file input."""

    kind: ClassVar[str] = "upload"

    locator: Locator  # None only in a document that is refused
    files: str | list[str] = "all"
    required: bool = False

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        fields, m = v.located(value, path, ("files", "required"), ())
        files = m.get("files", "all")
        if isinstance(files, list):
            files = [v.string(f, f"{path}.files", template=True) for f in files]
        else:
            files = v.string(files, f"{path}.files", template=True)
        fields["files"] = files
        fields["required"] = v.boolean(m.get("required", False), f"{path}.required")
        return fields

    def describe(self) -> str:
        files = "all task files" if self.files == "all" else f"file(s) {self.files}"
        return f"Upload {files} to {_where(self.locator)}"


@dataclass(frozen=True, kw_only=True)
class WaitForStep(Step):
    """Wait until a condition holds on the page; `into` keeps which branch matched."""

    kind: ClassVar[str] = "wait_for"

    condition: dict[str, Any]
    into: str | None = None

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        into = value.get("into") if isinstance(value, dict) else None
        if isinstance(value, dict):
            value = {k: x for k, x in value.items() if k != "into"}
        condition = v.condition(value, path)
        return {
            "condition": condition,
            "into": v.identifier(into, f"{path}.into") if into is not None else None,
        }

    def describe(self) -> str:
        return f"Wait for {describe_condition(self.condition)}"


EXTRACT_KINDS = ("text", "pairs", "table", "exists", "count", "attribute", "url")


@dataclass(frozen=True, kw_only=True)
class ExtractStep(Step):
    """Read something from the page into a variable."""

    kind: ClassVar[str] = "extract"

    into: str
    what: str
    locator: Locator | None = None
    attribute: str | None = None
    pattern: str | None = None
    has_default: bool = False
    default: Any = None
    # exists/count: how long to wait for a first match (None: look once, at once).
    wait_s: float | None = None

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        allowed = ("into", *EXTRACT_KINDS, "from", "pattern", "default", "wait_s")
        m = v.mapping(value, path, allowed)
        kinds = [k for k in EXTRACT_KINDS if k in m]
        if "into" not in m:
            v.err(path, "'into' (the variable name) is required")
        if len(kinds) != 1:
            v.err(path, f"give exactly one of {', '.join(EXTRACT_KINDS)}")
            return {"into": "", "what": "url"}
        what = kinds[0]
        fields: dict[str, Any] = {"into": v.identifier(m.get("into", "x"), f"{path}.into")}
        fields["what"] = what
        if what == "attribute":
            fields["attribute"] = v.string(m["attribute"], f"{path}.attribute")
            if "from" not in m:
                v.err(path, "'from' (the element's locator) is required with attribute")
            fields["locator"] = v.locator(m.get("from", {}), f"{path}.from")
        elif what == "url":
            if "from" in m:
                v.err(f"{path}.from", "not used with url")
        else:
            fields["locator"] = v.locator(m[what], f"{path}.{what}")
        if "pattern" in m:
            fields["pattern"] = v.string(m["pattern"], f"{path}.pattern")
            v.pattern(fields["pattern"], f"{path}.pattern")
        if "default" in m:
            fields["has_default"], fields["default"] = True, m["default"]
        if "wait_s" in m:
            if what not in ("exists", "count"):
                v.err(f"{path}.wait_s", "goes with exists or count (the others always wait)")
            fields["wait_s"] = v.seconds(m["wait_s"], f"{path}.wait_s")
        return fields

    def describe(self) -> str:
        waiting = f" (waiting up to {self.wait_s:g} s)" if self.wait_s else ""
        return f"Read {self._what()} into `{self.into}`{waiting}"

    def _what(self) -> str:
        if self.what == "url":
            return "the page address"
        noun = {
            "pairs": "the label/value rows of",
            "table": "the rows of",
            "exists": "whether",
            "text": "the text of",
            "count": "how many of",
        }
        attribute = f"the {self.attribute} of" if self.what == "attribute" else f"the {self.what}"
        prefix = noun.get(self.what, attribute)
        shown = " is shown" if self.what == "exists" else ""
        return f"{prefix} {_where(self.locator)}{shown}"


@dataclass(frozen=True, kw_only=True)
class IfStep(Step):
    """Run `then` steps when a condition holds, else the `else` steps."""

    kind: ClassVar[str] = "if"
    siblings: ClassVar[tuple[str, ...]] = ("then", "else")

    condition: str

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        step_path = path.rsplit(".", 1)[0]
        fields: dict[str, Any] = {"condition": v.expression(value, path)}
        if "then" not in item:
            v.err(step_path, "'if' needs 'then' steps")
        fields["steps"] = v.steps(item.get("then", []), f"{step_path}.then")
        fields["else_steps"] = v.steps(item.get("else", []), f"{step_path}.else")
        return fields

    def describe(self) -> str:
        return f"If {strip_braces(self.condition).strip()}:"


@dataclass(frozen=True, kw_only=True)
class ForEachStep(Step):
    """Run `do` steps once per item of a list, the item named by `as`."""

    kind: ClassVar[str] = "for_each"
    siblings: ClassVar[tuple[str, ...]] = ("as", "do", "until")

    items: str
    var: str = "item"
    until: str | None = None

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        step_path = path.rsplit(".", 1)[0]
        fields: dict[str, Any] = {
            "items": v.expression(value, path),
            "var": v.identifier(item.get("as", "item"), f"{step_path}.as"),
            "until": v.expression(item["until"], f"{step_path}.until") if "until" in item else None,
        }
        if "do" not in item:
            v.err(step_path, "'for_each' needs 'do' steps")
        fields["steps"] = v.steps(item.get("do", []), f"{step_path}.do")
        return fields

    def describe(self) -> str:
        return f"For each {self.var} in {self.items}:"


# The most rounds a `while` may be given: more is a typing slip, refused when the SOP is stored.
MAX_ROUNDS = 10_000


@dataclass(frozen=True, kw_only=True)
class WhileStep(Step):
    """Run `do` steps while a condition holds, at most `max` times."""

    kind: ClassVar[str] = "while"
    siblings: ClassVar[tuple[str, ...]] = ("do", "max")

    condition: str
    max_rounds: int = 20

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        step_path = path.rsplit(".", 1)[0]
        max_n = v.whole(item.get("max", 20), f"{step_path}.max", 1, MAX_ROUNDS, "rounds")
        fields: dict[str, Any] = {
            "condition": v.expression(value, path),
            "max_rounds": 20 if max_n is None else max_n,
        }
        if "do" not in item:
            v.err(step_path, "'while' needs 'do' steps")
        fields["steps"] = v.steps(item.get("do", []), f"{step_path}.do")
        return fields

    def describe(self) -> str:
        return f"While {self.condition} (at most {self.max_rounds} times):"


@dataclass(frozen=True, kw_only=True)
class SetStep(Step):
    """Give variables the values of expressions."""

    kind: ClassVar[str] = "set"

    values: dict[str, str]

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        m = value if isinstance(value, dict) else v.mapping(value, path, ())
        values = {}
        for key, expr in m.items():
            values[v.identifier(key, f"{path}.{key}")] = v.expression(expr, f"{path}.{key}")
        if not values:
            v.err(path, "give at least one name: expression")
        return {"values": values}

    def describe(self) -> str:
        return "Set " + ", ".join(f"{k} = {x}" for k, x in self.values.items())


@dataclass(frozen=True, kw_only=True)
class ScreenshotStep(Step):
    """Record a screenshot in the trajectory."""

    kind: ClassVar[str] = "screenshot"

    label: str | None = None

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        label = value.get("label") if isinstance(value, dict) else value
        if isinstance(value, dict):
            v.mapping(value, path, ("label",))
        return {"label": v.string(label, path) if label is not None else None}

    def describe(self) -> str:
        return f"Take a screenshot ({self.label})" if self.label else "Take a screenshot"


@dataclass(frozen=True, kw_only=True)
class DismissIfPresentStep(Step):
    """Close an element (a modal) if it is shown, waiting up to `wait_s` for it."""

    kind: ClassVar[str] = "dismiss_if_present"

    locator: Locator  # None only in a document that is refused
    wait_s: float = 0.0

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        fields, m = v.located(value, path, ("wait_s",), ())
        wait = m.get("wait_s", 0)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
            v.err(f"{path}.wait_s", "must be a number of seconds, 0 or more")
            wait = 0
        fields["wait_s"] = float(wait)
        if fields["locator"] is not None:
            v.dismiss.append(fields["locator"])
        return fields

    def describe(self) -> str:
        return f"Dismiss {_where(self.locator)} if it is shown"


@dataclass(frozen=True, kw_only=True)
class FailStep(Step):
    """Stop the task as failed, with a message."""

    kind: ClassVar[str] = "fail"

    message: str

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        message = value.get("message") if isinstance(value, dict) else value
        if isinstance(value, dict):
            v.mapping(value, path, ("message",))
        return {"message": v.string(message, path, template=True)}

    def describe(self) -> str:
        return f"Stop and fail: {self.message}"


@dataclass(frozen=True, kw_only=True)
class FinishStep(Step):
    """Skip the remaining steps and go to the outcome rules."""

    kind: ClassVar[str] = "finish"

    message: str = ""

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        if isinstance(value, dict | list) or isinstance(value, bool) and not value:
            v.err(path, "give `finish: true` or a short reason")
        text = "" if value is None or value is True else v.string(value, path, template=True)
        return {"message": text}

    def describe(self) -> str:
        return "Stop here and decide the outcome" + (f" ({self.message})" if self.message else "")


@dataclass(frozen=True, kw_only=True)
class EndIfStep(Step):
    """If an element or a text shows, end the task here with this status and notes."""

    kind: ClassVar[str] = "end_if"

    condition: dict[str, Any]  # {visible: <locator>} or {text: ..., case: ...}
    status: OutcomeStatus
    notes: str = ""
    wait_s: float | None = None  # how long to look for it (None: one look, at once)

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        m = v.mapping(value, path, ("visible", "text", "case", "wait_s", "status", "notes"))
        shown = {k: m[k] for k in ("visible", "text", "case") if k in m}
        if "visible" in shown and "case" in shown:
            v.err(f"{path}.case", "put case inside the visible locator")
        if "visible" not in m and "text" not in m:
            v.err(path, "give visible (a locator) or text: what, when it shows, ends the task")
            shown = {"text": ""}
        condition = v.condition(shown, path)
        status = v.string(m.get("status", ""), f"{path}.status")
        if status not in set(OutcomeStatus):
            v.err(f"{path}.status", f"must be one of {', '.join(OutcomeStatus)}")
            status = "failed"
        fields: dict[str, Any] = {"condition": condition, "status": OutcomeStatus(status)}
        fields["notes"] = v.string(m.get("notes", ""), f"{path}.notes", template=True)
        if "wait_s" in m:
            fields["wait_s"] = v.seconds(m["wait_s"], f"{path}.wait_s")
        return fields

    def describe(self) -> str:
        waiting = f" within {self.wait_s:g} s" if self.wait_s else ""
        return f"If {describe_condition(self.condition)} shows{waiting}, end the task {self.status}"


@dataclass(frozen=True, kw_only=True)
class ReviewStep(Step):
    """Pause the task for a person's approval before going on (before an irreversible step).

    The page is recorded with a screenshot and the task becomes ``pending_review``; an
    approved task runs again from the top and passes this step without stopping.
    """

    kind: ClassVar[str] = "review"

    message: str = ""  # what the reviewer should check (a template)

    @classmethod
    def parse(cls, v: Validator, value: Any, path: str, item: dict) -> dict[str, Any]:
        if isinstance(value, dict | list) or isinstance(value, bool) and not value:
            v.err(path, "give `review: true` or what the reviewer should check")
        text = "" if value is None or value is True else v.string(value, path, template=True)
        return {"message": text}

    def describe(self) -> str:
        return "Pause for a person's review" + (f": {self.message}" if self.message else "")


def _where(locator: Locator | None) -> str:
    return locator.describe() if locator else ""


STEP_KINDS = tuple(STEP_TYPES)


# --- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """A declared task input: the field name, its normaliser and whether it is required.

    A `sensitive` input (a password the task sets on the portal) is stored encrypted, shown as
    *** everywhere, kept out of every template context, and only typed by `fill: {secret: name}`.
    """

    name: str
    format: str = "text"
    required: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""
    sensitive: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """The data keys that give this input: its name, then its aliases."""
        return (self.name, *self.aliases)

    def describe(self) -> str:
        flags = (", required" if self.required else "") + (", sensitive" if self.sensitive else "")
        text = f"{self.name} ({self.format}{flags})"
        return f"{text}: {self.description}" if self.description else text


@dataclass(frozen=True)
class OutcomeRule:
    """`when` (None = always) -> final status and a notes template."""

    status: OutcomeStatus
    notes: str
    when: str | None = None


@dataclass(frozen=True)
class PortalErrorPattern:
    """Page text that means the portal itself is failing (a transient error)."""

    where: str  # "title", "heading" (h1-h3, alerts, title) or "text" (whole page)
    pattern: str  # case-insensitive regular expression

    def matches(self, text: str) -> bool:
        return patterns.search(self.pattern, text, ignore_case=True) is not None


@dataclass(frozen=True)
class SopSettings:
    """Run-time knobs of an SOP."""

    step_timeout_s: float = 10.0
    screenshots: Screenshots = Screenshots.FAILURES
    max_relogins: int = 2
    dismiss: tuple[Locator, ...] = ()  # tried when a click is intercepted by an overlay
    dialogs: str = "accept"  # how steps answer the page's dialogs (DIALOG_ANSWERS)


@dataclass(frozen=True)
class Sop:
    """A validated SOP document."""

    task_type: str
    title: str
    description: str
    portal: str
    base_url: str | None
    inputs: tuple[InputSpec, ...]
    require_one_of: tuple[tuple[str, ...], ...]
    settings: SopSettings
    portal_errors: tuple[PortalErrorPattern, ...]
    steps: tuple[Step, ...]
    verify: tuple[Step, ...]
    outcomes: tuple[OutcomeRule, ...]
    source: str = field(default="", repr=False)
    # What would most likely go wrong though the document is valid ({line, path, message}).
    warnings: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)

    def validate_inputs(self, parsed: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict]]:
        """Normalise the declared inputs; return them and every missing/malformed field."""
        data = {inputs_mod.normalise_key(str(k)): v for k, v in parsed.items()}
        out: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        for spec in self.inputs:
            value, error = input_value(spec, data)
            if error:
                # The value itself is never echoed for a sensitive input, even to its sender.
                message = f"{spec.name} is not a valid {spec.format}" if spec.sensitive else error
                errors.append({"field": spec.name, "message": message})
            out[spec.name] = value
        for group in self.require_one_of:
            if not any(out.get(name) for name in group) and not any(
                e["field"] in group for e in errors
            ):
                names = " or ".join(group)
                errors.append({"field": names, "message": f"give at least one of: {names}"})
        hidden = self.sensitive_keys()
        for key, value in data.items():  # undeclared fields stay available to templates
            if key not in hidden:
                out.setdefault(key, value)
        return out, errors

    def sensitive_keys(self) -> frozenset[str]:
        """Every data key (names and aliases) that gives a sensitive input."""
        return frozenset(k for spec in self.inputs if spec.sensitive for k in spec.keys)

    def split_inputs(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Validated inputs -> (the plain ones, the sensitive ones that have a value).

        A sensitive value the client also gave under another key is *** in the plain ones.
        """
        hidden = self.sensitive_keys()
        secret = {
            spec.name: str(values[spec.name])
            for spec in self.inputs
            if spec.sensitive and values.get(spec.name)
        }
        redactor = Redactor(secret.values())
        plain = {k: redactor.value(v) for k, v in values.items() if k not in hidden}
        return plain, secret

    def summary(self) -> str:
        """A numbered, human-readable description of the procedure."""
        lines = [f"{self.title} ({self.task_type}) on portal '{self.portal}'."]
        if self.description:
            lines.append(self.description.strip())
        if self.inputs:
            lines.append("Inputs: " + "; ".join(i.describe() for i in self.inputs) + ".")
        for group in self.require_one_of:
            lines.append(f"At least one of: {', '.join(group)}.")
        lines.append("Steps:")
        lines += summarise_steps(self.steps, prefix="")
        if self.verify:
            lines.append(
                "If an earlier attempt may already have submitted, instead of the steps above:"
            )
            lines += summarise_steps(self.verify, prefix="V")
        lines.append("Outcome:")
        for rule in self.outcomes:
            cond = f"if {strip_braces(rule.when).strip()}" if rule.when else "otherwise"
            lines.append(f"- {cond}: {rule.status} - {rule.notes.strip()}")
        return "\n".join(lines)

    def all_steps(self) -> list[Step]:
        """Every step, nested ones included, main steps and verify steps."""
        return flatten(self.steps) + flatten(self.verify)

    def login(self) -> LoginStep | None:
        """The first login step, if the SOP signs in itself (docs/portals.md)."""
        return next((s for s in self.all_steps() if isinstance(s, LoginStep)), None)


def flatten(steps: tuple[Step, ...]) -> list[Step]:
    """The steps and, after each, its nested ones."""
    out: list[Step] = []
    for step in steps:
        out.append(step)
        out += flatten(step.steps) + flatten(step.else_steps)
    return out


def input_value(spec: InputSpec, data: Mapping[str, Any]) -> tuple[Any, str | None]:
    is_list = spec.format == "service_lines"
    raw = next(
        (data[k] for k in (spec.name, *spec.aliases) if _present(data.get(k))),
        None,
    )
    if raw is None and is_list:
        raw = inputs_mod.service_lines_from_flat(data)
    if raw is None:
        return ([] if is_list else ""), (f"{spec.name} is required" if spec.required else None)
    if not is_list and not isinstance(raw, str):
        return "", f"{spec.name} must be text"
    try:
        return inputs_mod.NORMALISERS[spec.format](raw), None
    except inputs_mod.InputError as exc:
        return ([] if is_list else ""), str(exc)


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def summarise_steps(steps: tuple[Step, ...], prefix: str, depth: int = 0) -> list[str]:
    lines = []
    for n, step in enumerate(steps, start=1):
        number = f"{prefix}{n}" if not prefix or prefix[-1] in "V" else f"{prefix}.{n}"
        guard = f" (only if {strip_braces(step.when).strip()})" if step.when else ""
        flag = " [irreversible]" if step.irreversible else ""
        flag += " [dialogs answered Cancel]" if step.dialogs == "dismiss" else ""
        lines.append(f"{'   ' * depth}{number}. {step.title()}{guard}{flag}")
        lines += summarise_steps(step.steps, number, depth + 1)
        if step.else_steps:
            # numbered as the trajectory names them: 5.else.1 is the first step of 5's else
            lines.append(f"{'   ' * (depth + 1)}Otherwise:")
            lines += summarise_steps(step.else_steps, f"{number}.else", depth + 1)
    return lines
