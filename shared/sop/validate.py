"""The SOP language: a YAML document that tells the agent how to do one task type on a portal.

`load_sop(text)` validates a document strictly and returns a `Sop`; every problem is reported at
once in `SopInvalid.errors` as `{"line", "path", "message"}`. Templates (values, notes) and
conditions are Jinja2, evaluated in a `SandboxedEnvironment`: never `eval`. See docs/sops.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
import jinja2.meta
import yaml

from shared import inputs as inputs_mod
from shared.redaction import Redactor
from shared.settings import load_settings
from shared.ssrf import UrlRefused, url_origin
from shared.template_sandbox import BoundedSandbox

TASK_TYPES = (
    "check_eligibility",
    "submit_claim",
    "submit_prior_authorization",
    "submit_appeal",
    "check_claim_status",
)


class SopInvalid(ValueError):
    """An SOP document that does not validate; `errors` lists every problem found."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        first = errors[0] if errors else {"line": None, "path": "", "message": "invalid"}
        where = f"line {first['line']}: " if first.get("line") else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"invalid SOP: {where}{first['path']}: {first['message']}{more}")


class OutcomeStatus(StrEnum):
    """Final statuses an SOP's outcome rules may give."""

    COMPLETED = "completed"
    COMPLETED_WITH_ISSUES = "completed_with_issues"
    FAILED = "failed"


class Screenshots(StrEnum):
    """When the engine records a screenshot with a step."""

    EVERY_STEP = "every_step"
    FAILURES = "failures"


# --- templates ---------------------------------------------------------------------------


def _safe_filter(fn):
    # Template filters must not blow up the run on odd portal text; None means "not parseable".
    def wrapper(value: Any, *args: Any) -> Any:
        if value is None:
            return None
        try:
            return fn(str(value), *args)
        except (inputs_mod.InputError, ValueError):
            return None

    wrapper.__name__ = fn.__name__
    return wrapper


@lru_cache(maxsize=1)
def template_env() -> BoundedSandbox:
    """The one sandboxed Jinja2 environment used for every SOP template and condition."""
    settings = load_settings()
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        max_output_chars=settings.max_template_output_bytes,
        timeout_s=settings.template_timeout_s,
    )
    env.filters.update(
        us_date=_safe_filter(inputs_mod.us_date),
        iso_date=_safe_filter(inputs_mod.norm_date),
        money=_safe_filter(inputs_mod.norm_money),
        digits=lambda v: re.sub(r"\D", "", str(v)) if v is not None else None,
        squash=lambda v: re.sub(r"\s+", " ", str(v)).strip() if v is not None else None,
    )
    env.tests["matching"] = lambda value, pattern: bool(re.search(pattern, str(value or "")))
    env.globals["today"] = lambda: date.today().isoformat()
    return env


@lru_cache(maxsize=2048)
def _template(source: str) -> jinja2.Template:
    return template_env().from_string(source)


@lru_cache(maxsize=2048)
def _names(source: str) -> frozenset[str]:
    """The variables a template refers to."""
    return frozenset(jinja2.meta.find_undeclared_variables(template_env().parse(source)))


_TEMPLATE_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def fill_instructions(instructions: str, inputs: Mapping[str, Any]) -> str:
    """An SOP's summary with each ``{{ ... }}`` that names only the task's inputs filled in.

    What the agent learns on the portal (an extracted plan, a confirmation number) and optional
    inputs the task did not give stay as written. Sensitive inputs are *** in ``inputs``.
    """

    def fill(match: re.Match[str]) -> str:
        source = match.group(0)
        try:
            names = _names(source)
            if not names or not names <= inputs.keys():
                return source
            return _template(source).render(inputs)
        except (jinja2.TemplateError, ArithmeticError, ValueError, TypeError):
            return source

    return _TEMPLATE_EXPRESSION.sub(fill, instructions)


@lru_cache(maxsize=2048)
def _expression(source: str) -> Any:
    return template_env().compile_expression(_strip_braces(source), undefined_to_none=False)


def _strip_braces(source: str) -> str:
    # Conditions are expressions; forgive authors who wrap them in {{ }} like a template.
    m = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", source, re.S)
    return m[1] if m else source


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a template string with `context`; raises jinja2 errors on undefined names."""
    return _template(source).render(context) if "{" in source else source


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a sandboxed Jinja2 expression (a condition or a `set` value)."""
    return _expression(expression)(**context)


# --- the document model ------------------------------------------------------------------

LOCATOR_KINDS = ("css", "xpath", "label", "button", "link", "role", "text")
_LOCATOR_OPTIONS = ("name", "nth", "within", "match")


@dataclass(frozen=True)
class Locator:
    """How to find one element: a kind (label, button, role...) and its text, maybe narrowed."""

    kind: str
    value: str
    name: str | None = None  # accessible name, with kind "role"
    nth: int | None = None  # 1-based among the matches; default the first
    within: Locator | None = None
    match: str | None = None  # "exact" or "contains"; default exact, but contains for text

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
        if self.nth:
            text += f" #{self.nth}"
        if self.within:
            text += f" in {self.within.describe()}"
        return text


@dataclass(frozen=True)
class Step:
    """One step of an SOP; `args` holds the kind's validated arguments."""

    kind: str
    args: dict[str, Any]
    path: str
    line: int | None = None
    name: str | None = None
    timeout_s: float | None = None
    irreversible: bool = False
    optional: bool = False
    when: str | None = None
    steps: tuple[Step, ...] = ()  # `then` of if, `do` of loops
    else_steps: tuple[Step, ...] = ()

    def title(self) -> str:
        """The step's name, or a description generated from its arguments."""
        return self.name or _describe_step(self)


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
        return re.search(self.pattern, text, re.I) is not None


@dataclass(frozen=True)
class SopSettings:
    """Run-time knobs of an SOP."""

    step_timeout_s: float = 10.0
    screenshots: Screenshots = Screenshots.FAILURES
    max_relogins: int = 2
    dismiss: tuple[Locator, ...] = ()  # tried when a click is intercepted by an overlay


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

    def validate_inputs(self, parsed: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict]]:
        """Normalise the declared inputs; return them and every missing/malformed field."""
        data = {inputs_mod.normalise_key(str(k)): v for k, v in parsed.items()}
        out: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        for spec in self.inputs:
            value, error = _input_value(spec, data)
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
            lines.append("Inputs: " + "; ".join(_describe_input(i) for i in self.inputs) + ".")
        for group in self.require_one_of:
            lines.append(f"At least one of: {', '.join(group)}.")
        lines.append("Steps:")
        lines += _summarise_steps(self.steps, prefix="")
        if self.verify:
            lines.append(
                "If an earlier attempt may already have submitted, instead of the steps above:"
            )
            lines += _summarise_steps(self.verify, prefix="V")
        lines.append("Outcome:")
        for rule in self.outcomes:
            cond = f"if {_strip_braces(rule.when).strip()}" if rule.when else "otherwise"
            lines.append(f"- {cond}: {rule.status} - {rule.notes.strip()}")
        return "\n".join(lines)

    def all_steps(self) -> list[Step]:
        """Every step, nested ones included, main steps and verify steps."""
        return _flatten(self.steps) + _flatten(self.verify)


def _flatten(steps: tuple[Step, ...]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        out.append(step)
        out += _flatten(step.steps) + _flatten(step.else_steps)
    return out


def _input_value(spec: InputSpec, data: Mapping[str, Any]) -> tuple[Any, str | None]:
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


def _describe_input(spec: InputSpec) -> str:
    flags = (", required" if spec.required else "") + (", sensitive" if spec.sensitive else "")
    text = f"{spec.name} ({spec.format}{flags})"
    return f"{text}: {spec.description}" if spec.description else text


def _summarise_steps(
    steps: tuple[Step, ...], prefix: str, depth: int = 0, start: int = 0
) -> list[str]:
    lines = []
    for n, step in enumerate(steps, start=start + 1):
        number = f"{prefix}{n}" if not prefix or prefix[-1] in "V" else f"{prefix}.{n}"
        guard = f" (only if {_strip_braces(step.when).strip()})" if step.when else ""
        flag = " [irreversible]" if step.irreversible else ""
        lines.append(f"{'   ' * depth}{number}. {step.title()}{guard}{flag}")
        lines += _summarise_steps(step.steps, number, depth + 1)
        if step.else_steps:
            lines.append(f"{'   ' * (depth + 1)}Otherwise:")
            lines += _summarise_steps(step.else_steps, number, depth + 1, len(step.steps))
    return lines


def _q(value: Any) -> str:
    return f'"{value}"'


def _describe_step(step: Step) -> str:
    a = step.args
    loc = a.get("locator")
    where = loc.describe() if loc else ""
    match step.kind:
        case "login":
            return "Sign in to the portal (enter a one-time code if asked)"
        case "goto":
            return f"Go to {a['url']}"
        case "fill":
            if a.get("secret"):
                return f"Type the sensitive input `{a['secret']}` into {where}"
            return f"Fill {where} with {_q(a['value'])}"
        case "select":
            return f"Choose {_q(a['option'])} in {where}"
        case "check":
            return f"{'Tick' if a['checked'] else 'Untick'} {where}"
        case "click":
            return f"Click {where}"
        case "upload":
            files = "all task files" if a["files"] == "all" else f"file(s) {a['files']}"
            return f"Upload {files} to {where}"
        case "wait_for":
            return f"Wait for {describe_condition(a)}"
        case "extract":
            return f"Read {_describe_extract(a)} into `{a['into']}`"
        case "if":
            return f"If {_strip_braces(a['condition']).strip()}:"
        case "for_each":
            return f"For each {a['as']} in {a['items']}:"
        case "while":
            return f"While {a['condition']} (at most {a['max']} times):"
        case "set":
            return "Set " + ", ".join(f"{k} = {v}" for k, v in a["values"].items())
        case "screenshot":
            return f"Take a screenshot ({a['label']})" if a.get("label") else "Take a screenshot"
        case "dismiss_if_present":
            return f"Dismiss {where} if it is shown"
        case "fail":
            return f"Stop and fail: {a['message']}"
        case "finish":
            return "Stop here and decide the outcome" + (
                f" ({a['message']})" if a["message"] else ""
            )
    return step.kind


def describe_condition(cond: Mapping[str, Any]) -> str:
    if "any_of" in cond:
        return " or ".join(describe_condition(c) for c in cond["any_of"])
    if "visible" in cond:
        return cond["visible"].describe()
    if "gone" in cond:
        return f"{cond['gone'].describe()} to disappear"
    if "text" in cond:
        return f"the text {_q(cond['text'])}"
    return f"the address to contain {_q(cond['url_contains'])}"


def _describe_extract(a: Mapping[str, Any]) -> str:
    what = a["what"]
    if what == "url":
        return "the page address"
    noun = {
        "pairs": "the label/value rows of",
        "table": "the rows of",
        "exists": "whether",
        "text": "the text of",
        "count": "how many of",
    }
    prefix = noun.get(what, f"the {a['attribute']} of" if what == "attribute" else f"the {what}")
    return f"{prefix} {a['locator'].describe()}{' is shown' if what == 'exists' else ''}"


# --- loading and validation --------------------------------------------------------------

_COMMON_STEP_KEYS = ("name", "timeout_s", "irreversible", "optional", "when")
_CONTROL_SIBLINGS = {
    "if": ("then", "else"),
    "for_each": ("as", "do", "until"),
    "while": ("do", "max"),
}
STEP_KINDS = (
    "login",
    "goto",
    "fill",
    "select",
    "check",
    "click",
    "upload",
    "wait_for",
    "extract",
    "if",
    "for_each",
    "while",
    "set",
    "screenshot",
    "dismiss_if_present",
    "fail",
    "finish",
)
_EXTRACT_KINDS = ("text", "pairs", "table", "exists", "count", "attribute", "url")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_KEYS = {
    "task_type",
    "title",
    "description",
    "portal",
    "inputs",
    "require_one_of",
    "settings",
    "portal_errors",
    "steps",
    "verify",
    "outcomes",
}


@dataclass(frozen=True)
class SopLimits:
    """How big an SOP document may be; each field is the setting named in its comment."""

    nodes: int = 20_000  # MAX_SOP_NODES, counted after alias expansion
    depth: int = 32  # MAX_SOP_DEPTH
    steps: int = 500  # MAX_SOP_STEPS


# For documents already stored: they passed the limits in force when they were stored, and a
# task must not fail because an operator lowered a limit since. Still finite (aliases).
STORED_SOP_LIMITS = SopLimits(nodes=2_000_000, depth=100, steps=100_000)


class SopLimitExceeded(SopInvalid):
    """An SOP document over one of its limits; `limit` names the setting, `max` its value."""

    def __init__(self, limit: str, maximum: int, message: str, line: int | None = None) -> None:
        self.limit = limit
        self.max = maximum
        super().__init__([{"line": line, "path": "", "message": message, "limit": limit}])


# A URL's scheme ("file:", "javascript:"...); "{{ x }}" templates are checked when they run.
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)")


def offsite_urls(sop: Sop, origins: set[str]) -> list[dict[str, Any]]:
    """Errors ({line, path, message}) for each literal absolute URL a goto or login step opens
    outside ``origins`` (normalised ``scheme://host[:port]``)."""
    errors = []
    for step in sop.all_steps():
        url = str(step.args.get("url", "")).strip() if step.kind in ("goto", "login") else ""
        if "{" in url or not re.match(r"(?i)https?://", url):
            continue
        try:
            origin: str | None = url_origin(url)
        except UrlRefused:
            origin = None
        if origin not in origins:
            errors.append(
                {
                    "line": step.line,
                    "path": step.path,
                    "message": f"{url} is not on one of the portal's origins "
                    f"({', '.join(sorted(origins)) or 'none known'})",
                }
            )
    return errors


def load_sop(text: str, limits: SopLimits | None = None) -> Sop:
    """Parse and strictly validate an SOP document; raise SopInvalid listing every problem."""
    limits = limits or SopLimits()
    data, lines = _load_yaml(text, limits)
    v = _Validator(lines)
    try:
        sop = v.document(data, text)
    except RecursionError:  # a template nested past what jinja2 can walk
        message = "a template or condition is nested too deeply"
        raise SopInvalid([{"line": None, "path": "", "message": message}]) from None
    if v.errors or sop is None:
        raise SopInvalid(v.errors or [{"line": None, "path": "", "message": "invalid"}])
    if (n := len(sop.all_steps())) > limits.steps:
        raise SopLimitExceeded(
            "MAX_SOP_STEPS", limits.steps, f"the SOP has {n} steps; MAX_SOP_STEPS is {limits.steps}"
        )
    return sop


def builtin_sop_text(task_type: str) -> str:
    """The YAML text of the built-in SOP for `task_type`."""
    if task_type not in TASK_TYPES:
        raise KeyError(f"unknown task type {task_type!r}")
    return resources.files("shared.sop_library").joinpath(f"{task_type}.yaml").read_text("utf-8")


@lru_cache(maxsize=len(TASK_TYPES))
def builtin_sop(task_type: str) -> Sop:
    """The built-in SOP for `task_type`, validated."""
    return load_sop(builtin_sop_text(task_type))


# C0 controls other than tab, newline and carriage return, DEL, and C1 controls. YAML's reader
# refuses most of them in the text, but escapes ("\\0", "\\x01") put them in values, and a NUL
# cannot be stored in PostgreSQL text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Far more digits than any real number; int() refuses past 4,300 anyway, with a ValueError.
_MAX_NUMBER_CHARS = 100


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that measures the document while composing it, before anything is built.

    Each node's size counts what its aliases would expand to, so an alias bomb (a few hundred
    bytes that expand to millions of nodes) is refused as soon as its size passes the limit,
    in time proportional to its text. An alias to a node that is still being composed (a
    self-reference) is refused too: nothing could expand it.
    """

    def __init__(self, text: str, limits: SopLimits) -> None:
        super().__init__(text)
        self.limits = limits
        self._sizes: dict[int, int] = {}
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > self.limits.depth:
            raise SopLimitExceeded(
                "MAX_SOP_DEPTH",
                self.limits.depth,
                f"the document is nested more than {self.limits.depth} deep (MAX_SOP_DEPTH)",
                mark.line + 1,
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        if alias:
            if id(node) not in self._sizes:
                raise _invalid(mark.line + 1, "YAML: an alias refers to the node that contains it")
            return node
        self._sizes[id(node)] = size = self._measure(node)
        if size > self.limits.nodes:
            raise SopLimitExceeded(
                "MAX_SOP_NODES",
                self.limits.nodes,
                f"the document expands to more than {self.limits.nodes} nodes (MAX_SOP_NODES);"
                " aliases count as often as they are used",
                mark.line + 1,
            )
        return node

    def _measure(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._sizes[id(item)] for item in node.value)
        if isinstance(node, yaml.MappingNode):
            return 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        self._check_scalar(node)
        return 1

    def _check_scalar(self, node: yaml.Node) -> None:
        line = node.start_mark.line + 1
        if _CONTROL.search(node.value):
            raise _invalid(line, "a value contains a control character")
        if node.tag.endswith((":int", ":float")) and len(node.value) > _MAX_NUMBER_CHARS:
            raise _invalid(line, f"a number has more than {_MAX_NUMBER_CHARS} digits")


def _invalid(line: int, message: str) -> SopInvalid:
    return SopInvalid([{"line": line, "path": "", "message": message}])


def _load_yaml(text: str, limits: SopLimits) -> tuple[Any, dict[str, int]]:
    """YAML -> plain data plus a map of path -> 1-based line, for error messages."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, limits)  # its reader refuses control characters here
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        data = _convert(loader, node, "", lines) if node is not None else None
    except SopInvalid:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SopInvalid([{"line": line, "path": "", "message": f"YAML: {exc.problem}"}]) from None
    except yaml.YAMLError as exc:
        message = f"YAML: {exc}".replace("special characters", "control characters")
        raise SopInvalid([{"line": None, "path": "", "message": message}]) from None
    except (ValueError, TypeError, RecursionError) as exc:
        # A value the constructors could not build; the checks above should have caught it.
        message = f"YAML: a value could not be read ({type(exc).__name__})"
        raise SopInvalid([{"line": None, "path": "", "message": message}]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # honour `<<: *anchor` merges
        merged = len(node.value) - explicit  # merged pairs come first; explicit keys override
        out: dict[str, Any] = {}
        for i, (key_node, value_node) in enumerate(node.value):
            key = str(loader.construct_object(key_node))
            child = f"{path}.{key}" if path else key
            if key in out and (i < merged or key in _explicit_keys(node.value[merged:i])):
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    if node.tag.endswith(":timestamp"):
        return node.value  # keep dates as written; SOPs compare text
    return loader.construct_object(node)


def _explicit_keys(pairs: list[tuple[yaml.Node, yaml.Node]]) -> set[str]:
    return {str(k.value) for k, _ in pairs}


def _parent(path: str) -> str:
    m = re.match(r"^(.*)(\.[^.\[\]]+|\[\d+\])$", path)
    return m[1] if m else ""


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

    Checked when an SOP is loaded, and again by the engine once templates are filled in.
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


class _Validator:
    """Walks the loaded document, collecting every error, and builds the model."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines
        self.errors: list[dict[str, Any]] = []
        self.dismiss: list[Locator] = []
        # Sensitive inputs' names and aliases: no template or condition may name them.
        self.sensitive: dict[str, str] = {}

    def err(self, path: str, message: str) -> None:
        probe = path
        while probe not in self.lines and probe:
            probe = _parent(probe)
        self.errors.append({"line": self.lines.get(probe), "path": path, "message": message})

    # -- scalars --

    def string(self, value: Any, path: str, *, template: bool = False) -> str:
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            self.err(path, "must be text (quote it if it looks like yes/no/null)")
            return ""
        text = str(value)
        if template:
            self.template(text, path)
        return text

    def template(self, text: str, path: str) -> None:
        try:
            tree = template_env().parse(text)
        except jinja2.TemplateSyntaxError as exc:
            self.err(path, f"template error: {exc.message}")
            return
        except RecursionError:
            self.err(path, "template error: nested too deeply")
            return
        self.no_sensitive(tree, path)

    def expression(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if text:
            try:
                _expression(text)
                tree = template_env().parse("{{ " + _strip_braces(text) + " }}")
            except jinja2.TemplateSyntaxError as exc:
                self.err(path, f"condition error: {exc.message}")
            except RecursionError:
                self.err(path, "condition error: nested too deeply")
            else:
                self.no_sensitive(tree, path)
        return text

    def no_sensitive(self, tree: jinja2.nodes.Template, path: str) -> None:
        """A sensitive input is only ever typed: no template or condition may read it."""
        for name in sorted(jinja2.meta.find_undeclared_variables(tree) & self.sensitive.keys()):
            spec = self.sensitive[name]
            what = "a sensitive input" if name == spec else f"an alias of sensitive input '{spec}'"
            self.err(
                path,
                f"'{name}' is {what}: it cannot be used in a template or a condition; "
                f"type it with fill: {{label: ..., secret: {spec}}}",
            )

    def number(self, value: Any, path: str, *, minimum: float = 0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            self.err(path, f"must be a number greater than {minimum:g}")
            return 1.0
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.err(path, "must be true or false")
            return False
        return value

    def mapping(self, value: Any, path: str, allowed: set[str] | tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.err(path, "must be a mapping of key: value")
            return {}
        for key in value:
            if key not in allowed:
                self.err(f"{path}.{key}" if path else key, f"unknown key '{key}'")
        return value

    def sequence(self, value: Any, path: str) -> list:
        if not isinstance(value, list):
            self.err(path, "must be a list")
            return []
        return value

    # -- document --

    def document(self, data: Any, text: str) -> Sop | None:
        if not isinstance(data, dict):
            self.err("", "the document must be a mapping with task_type, steps, outcomes...")
            return None
        self.mapping(data, "", _TOP_KEYS)
        for required in ("task_type", "title", "portal", "steps", "outcomes"):
            if required not in data:
                self.err(required, f"'{required}' is required")
        task_type = self.string(data.get("task_type", ""), "task_type")
        if task_type and not _IDENT.fullmatch(task_type):
            self.err("task_type", "must be a snake_case name")
        portal, base_url = self.portal(data.get("portal"), "portal")
        inputs = self.inputs(data.get("inputs", []), "inputs")
        names = {i.name for i in inputs}
        self.sensitive = {key: i.name for i in inputs if i.sensitive for key in i.keys}
        require_one_of = self.require_one_of(data.get("require_one_of", []), names)
        steps = self.steps(data.get("steps", []), "steps")
        if "steps" in data and not steps:
            self.err("steps", "needs at least one step")
        verify = self.steps(data.get("verify", []), "verify")
        self.check_irreversible(steps, verify)
        settings = self.settings(data.get("settings", {}), "settings")
        return Sop(
            task_type=task_type,
            title=self.string(data.get("title", ""), "title"),
            description=self.string(data.get("description", ""), "description").strip(),
            portal=portal,
            base_url=base_url,
            inputs=inputs,
            require_one_of=require_one_of,
            settings=settings,
            portal_errors=self.portal_errors(data.get("portal_errors", []), "portal_errors"),
            steps=steps,
            verify=verify,
            outcomes=self.outcomes(data.get("outcomes", []), "outcomes"),
            source=text,
        )

    def portal(self, value: Any, path: str) -> tuple[str, str | None]:
        if isinstance(value, str):
            return value, None
        m = self.mapping(value, path, ("name", "base_url"))
        if m and "name" not in m:
            self.err(path, "'name' is required")
        name = self.string(m.get("name", ""), f"{path}.name")
        base_url = m.get("base_url")
        if base_url is not None:
            base_url = self.string(base_url, f"{path}.base_url")
            if not re.match(r"https?://", base_url):
                self.err(f"{path}.base_url", "must start with http:// or https://")
        return name, base_url

    def inputs(self, value: Any, path: str) -> tuple[InputSpec, ...]:
        specs: list[InputSpec] = []
        for i, item in enumerate(self.sequence(value, path)):
            p = f"{path}[{i}]"
            m = self.mapping(
                item, p, ("name", "format", "required", "aliases", "description", "sensitive")
            )
            name = self.string(m.get("name", ""), f"{p}.name")
            if not _IDENT.fullmatch(name or "-"):
                self.err(f"{p}.name", "an input needs a snake_case name")
            if name in {s.name for s in specs}:
                self.err(f"{p}.name", f"input '{name}' is declared twice")
            fmt = self.string(m.get("format", "text"), f"{p}.format")
            if fmt not in inputs_mod.NORMALISERS:
                self.err(
                    f"{p}.format",
                    f"unknown format '{fmt}' (one of: {', '.join(inputs_mod.NORMALISERS)})",
                )
            aliases = self.sequence(m.get("aliases", []), f"{p}.aliases")
            specs.append(
                InputSpec(
                    name=name,
                    format=fmt,
                    required=self.boolean(m.get("required", False), f"{p}.required"),
                    aliases=tuple(
                        inputs_mod.normalise_key(self.string(a, f"{p}.aliases")) for a in aliases
                    ),
                    description=self.string(m.get("description", ""), f"{p}.description").strip(),
                    sensitive=self.boolean(m.get("sensitive", False), f"{p}.sensitive"),
                )
            )
        return tuple(specs)

    def require_one_of(self, value: Any, names: set[str]) -> tuple[tuple[str, ...], ...]:
        groups = []
        for i, group in enumerate(self.sequence(value, "require_one_of")):
            p = f"require_one_of[{i}]"
            items = tuple(self.string(n, p) for n in self.sequence(group, p))
            for n in items:
                if n not in names:
                    self.err(p, f"'{n}' is not a declared input")
            groups.append(items)
        return tuple(groups)

    def settings(self, value: Any, path: str) -> SopSettings:
        allowed = ("step_timeout_s", "screenshots", "max_relogins", "dismiss")
        m = self.mapping(value if value is not None else {}, path, allowed)
        screenshots = self.string(m.get("screenshots", "failures"), f"{path}.screenshots")
        if screenshots not in set(Screenshots):
            self.err(f"{path}.screenshots", "must be every_step or failures")
            screenshots = "failures"
        relogins = m.get("max_relogins", 2)
        if isinstance(relogins, bool) or not isinstance(relogins, int) or relogins < 0:
            self.err(f"{path}.max_relogins", "must be a whole number, 0 or more")
            relogins = 2
        dismiss = [
            self.locator(item, f"{path}.dismiss[{i}]")
            for i, item in enumerate(self.sequence(m.get("dismiss", []), f"{path}.dismiss"))
        ]
        return SopSettings(
            step_timeout_s=self.number(m.get("step_timeout_s", 10.0), f"{path}.step_timeout_s"),
            screenshots=Screenshots(screenshots),
            max_relogins=relogins,
            dismiss=tuple(d for d in dismiss if d) + tuple(self.dismiss),
        )

    def portal_errors(self, value: Any, path: str) -> tuple[PortalErrorPattern, ...]:
        out = []
        for i, item in enumerate(self.sequence(value, path)):
            p = f"{path}[{i}]"
            if isinstance(item, str):
                where, pattern = "heading", re.escape(item)
            else:
                m = self.mapping(item, p, ("title", "heading", "text", "regex"))
                keys = [k for k in ("title", "heading", "text") if k in m]
                if len(keys) != 1:
                    self.err(p, "give exactly one of title, heading, text")
                    continue
                where = keys[0]
                pattern = self.string(m[where], f"{p}.{where}")
                if not m.get("regex", False):
                    pattern = re.escape(pattern)
            try:
                re.compile(pattern)
            except re.error as exc:
                self.err(p, f"bad regular expression: {exc}")
                continue
            out.append(PortalErrorPattern(where=where, pattern=pattern))
        return tuple(out)

    def outcomes(self, value: Any, path: str) -> tuple[OutcomeRule, ...]:
        rules = []
        items = self.sequence(value, path)
        for i, item in enumerate(items):
            p = f"{path}[{i}]"
            m = self.mapping(item, p, ("when", "status", "notes"))
            status = self.string(m.get("status", ""), f"{p}.status")
            if status not in set(OutcomeStatus):
                self.err(f"{p}.status", f"must be one of {', '.join(OutcomeStatus)}")
                status = "failed"
            when = self.expression(m["when"], f"{p}.when") if "when" in m else None
            if when is None and i != len(items) - 1:
                self.err(p, "a rule without 'when' matches everything; it must be the last")
            rules.append(
                OutcomeRule(
                    status=OutcomeStatus(status),
                    notes=self.string(m.get("notes", ""), f"{p}.notes", template=True),
                    when=when,
                )
            )
        if items and rules and rules[-1].when is not None:
            self.err(path, "the last rule must have no 'when' (the default outcome)")
        return tuple(rules)

    def check_irreversible(self, steps: tuple[Step, ...], verify: tuple[Step, ...]) -> None:
        irreversible = [s for s in _flatten(steps) if s.irreversible]
        if irreversible and not verify:
            self.err(irreversible[0].path, "an irreversible step needs a 'verify' section")
        for step in _flatten(verify):
            if step.irreversible:
                self.err(step.path, "verify steps must not be irreversible")

    # -- steps --

    def steps(self, value: Any, path: str) -> tuple[Step, ...]:
        out = []
        for i, item in enumerate(self.sequence(value, path)):
            step = self.step(item, f"{path}[{i}]")
            if step is not None:
                out.append(step)
        return tuple(out)

    def step(self, item: Any, path: str) -> Step | None:
        if not isinstance(item, dict):
            self.err(path, "a step must be a mapping such as {click: {button: Search}}")
            return None
        kinds = [k for k in item if k in STEP_KINDS]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            self.err(
                path, f"a step needs exactly one action ({', '.join(STEP_KINDS)}); found {found}"
            )
            return None
        kind = kinds[0]
        p = f"{path}.{kind}"
        self.mapping(item, path, (kind, *_COMMON_STEP_KEYS, *_CONTROL_SIBLINGS.get(kind, ())))
        args, steps, else_steps = getattr(self, f"step_{kind}")(item[kind], p, item, path)
        timeout = item.get("timeout_s")
        return Step(
            kind=kind,
            args=args,
            path=p,
            line=self.lines.get(p),
            name=(
                self.string(item["name"], f"{path}.name", template=True) if "name" in item else None
            ),
            timeout_s=self.number(timeout, f"{path}.timeout_s") if timeout is not None else None,
            irreversible=self.boolean(item.get("irreversible", False), f"{path}.irreversible"),
            optional=self.boolean(item.get("optional", False), f"{path}.optional"),
            when=self.expression(item["when"], f"{path}.when") if "when" in item else None,
            steps=steps,
            else_steps=else_steps,
        )

    def locator(self, value: Any, path: str, extra: tuple[str, ...] = ()) -> Locator | None:
        m = self.mapping(value, path, (*LOCATOR_KINDS, *_LOCATOR_OPTIONS, *extra))
        kinds = [k for k in LOCATOR_KINDS if k in m]
        if len(kinds) != 1:
            self.err(path, f"give exactly one locator: {', '.join(LOCATOR_KINDS)}")
            return None
        kind = kinds[0]
        if "name" in m and kind != "role":
            self.err(f"{path}.name", "'name' goes with 'role' only")
        nth = m.get("nth")
        if nth is not None and (isinstance(nth, bool) or not isinstance(nth, int) or nth < 1):
            self.err(f"{path}.nth", "must be a whole number, 1 or more (1 is the first)")
            nth = None
        match = self.string(m["match"], f"{path}.match") if "match" in m else None
        if match not in (None, "exact", "contains"):
            self.err(f"{path}.match", "must be exact or contains")
        within = self.locator(m["within"], f"{path}.within") if "within" in m else None
        if selector_tests_value(kind, str(m[kind])):
            self.err(f"{path}.{kind}", VALUE_TEST_REFUSED)
        return Locator(
            kind=kind,
            value=self.string(m[kind], f"{path}.{kind}", template=True),
            name=self.string(m["name"], f"{path}.name", template=True) if "name" in m else None,
            nth=nth,
            within=within,
            match=match,
        )

    def _located(self, value: Any, path: str, extra: tuple[str, ...], required: tuple[str, ...]):
        loc = self.locator(value, path, extra)
        args: dict[str, Any] = {"locator": loc}
        if isinstance(value, dict):
            for key in required:
                if key not in value:
                    self.err(path, f"'{key}' is required")
        return args, (value if isinstance(value, dict) else {})

    def step_login(self, value: Any, path: str, item: dict, step_path: str):
        keys = (
            "url",
            "username_label",
            "password_label",
            "button",
            "code_label",
            "code_button",
            "success",
        )
        m = self.mapping(value if value is not None else {}, path, keys)
        login_url = self.string(m.get("url", "/login"), f"{path}.url", template=True)
        self.page_url(login_url, f"{path}.url")
        args = {
            "url": login_url,
            "username_label": self.string(m.get("username_label", "Username"), path),
            "password_label": self.string(m.get("password_label", "Password"), path),
            "button": self.string(m.get("button", "Sign in"), path),
            "code_label": self.string(m.get("code_label", "One-time code"), path),
            "code_button": self.string(m.get("code_button", "Verify"), path),
            "success": self.condition(m["success"], f"{path}.success") if "success" in m else None,
        }
        return args, (), ()

    def step_goto(self, value: Any, path: str, item: dict, step_path: str):
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(value, dict):
            self.mapping(value, path, ("url",))
        url = self.string(url, path, template=True)
        self.page_url(url, path)
        return {"url": url}, (), ()

    def page_url(self, url: str, path: str) -> None:
        """A page address the SOP gives literally may only be an http(s) one (the portal's
        origins are checked by :func:`offsite_urls`, which knows them)."""
        scheme = _URL_SCHEME.match(url.strip())
        if scheme and scheme.group(1).lower() not in ("http", "https"):
            self.err(path, f"goto may open only the portal's http(s) pages, not a {scheme[0]} URL")

    def step_fill(self, value: Any, path: str, item: dict, step_path: str):
        args, m = self._located(value, path, ("value", "secret", "clear"), ())
        if isinstance(value, dict) and ("value" in m) == ("secret" in m):
            self.err(path, "give 'value' (text) or 'secret' (a sensitive input's name)")
        args["value"] = self.string(m.get("value", ""), f"{path}.value", template=True)
        args["secret"] = None
        if "secret" in m:
            secret = self.string(m["secret"], f"{path}.secret")
            if secret not in self.sensitive.values():
                self.err(f"{path}.secret", f"'{secret}' is not a declared sensitive input")
            args["secret"] = secret
        args["clear"] = self.boolean(m.get("clear", True), f"{path}.clear")
        return args, (), ()

    def step_select(self, value: Any, path: str, item: dict, step_path: str):
        args, m = self._located(value, path, ("option",), ("option",))
        args["option"] = self.string(m.get("option", ""), f"{path}.option", template=True)
        return args, (), ()

    def step_check(self, value: Any, path: str, item: dict, step_path: str):
        args, m = self._located(value, path, ("checked",), ())
        args["checked"] = self.boolean(m.get("checked", True), f"{path}.checked")
        return args, (), ()

    def step_click(self, value: Any, path: str, item: dict, step_path: str):
        return self._located(value, path, (), ())[0], (), ()

    def step_upload(self, value: Any, path: str, item: dict, step_path: str):
        args, m = self._located(value, path, ("files", "required"), ())
        files = m.get("files", "all")
        if isinstance(files, list):
            files = [self.string(f, f"{path}.files", template=True) for f in files]
        else:
            files = self.string(files, f"{path}.files", template=True)
        args["files"] = files
        args["required"] = self.boolean(m.get("required", False), f"{path}.required")
        return args, (), ()

    def condition(self, value: Any, path: str) -> dict[str, Any]:
        m = self.mapping(value, path, ("visible", "gone", "text", "url_contains", "any_of", "as"))
        keys = [k for k in ("visible", "gone", "text", "url_contains", "any_of") if k in m]
        if len(keys) != 1:
            self.err(path, "give exactly one of visible, gone, text, url_contains, any_of")
            return {"text": ""}
        key = keys[0]
        out: dict[str, Any] = {"as": self.string(m["as"], f"{path}.as") if "as" in m else None}
        if key in ("visible", "gone"):
            out[key] = self.locator(m[key], f"{path}.{key}")
        elif key == "any_of":
            items = self.sequence(m[key], f"{path}.any_of")
            out[key] = [self.condition(c, f"{path}.any_of[{i}]") for i, c in enumerate(items)]
            if not items:
                self.err(f"{path}.any_of", "needs at least one condition")
        else:
            out[key] = self.string(m[key], f"{path}.{key}", template=True)
        return out

    def step_wait_for(self, value: Any, path: str, item: dict, step_path: str):
        into = value.get("into") if isinstance(value, dict) else None
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "into"}
        args = self.condition(value, path)
        args["into"] = self.identifier(into, f"{path}.into") if into is not None else None
        return args, (), ()

    def identifier(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if not _IDENT.fullmatch(text or "-"):
            self.err(path, "must be a variable name (letters, digits, underscores)")
        return text

    def step_extract(self, value: Any, path: str, item: dict, step_path: str):
        keys = ("into", *_EXTRACT_KINDS, "from", "pattern", "default")
        m = self.mapping(value, path, keys)
        kinds = [k for k in _EXTRACT_KINDS if k in m]
        if "into" not in m:
            self.err(path, "'into' (the variable name) is required")
        if len(kinds) != 1:
            self.err(path, f"give exactly one of {', '.join(_EXTRACT_KINDS)}")
            return {"into": "", "what": "url"}, (), ()
        what = kinds[0]
        args: dict[str, Any] = {"into": self.identifier(m.get("into", "x"), f"{path}.into")}
        args["what"] = what
        if what == "attribute":
            args["attribute"] = self.string(m["attribute"], f"{path}.attribute")
            if "from" not in m:
                self.err(path, "'from' (the element's locator) is required with attribute")
            args["locator"] = self.locator(m.get("from", {}), f"{path}.from")
        elif what == "url":
            if "from" in m:
                self.err(f"{path}.from", "not used with url")
        else:
            args["locator"] = self.locator(m[what], f"{path}.{what}")
        if "pattern" in m:
            args["pattern"] = self.string(m["pattern"], f"{path}.pattern")
            try:
                re.compile(args["pattern"])
            except re.error as exc:
                self.err(f"{path}.pattern", f"bad regular expression: {exc}")
        if "default" in m:
            args["default"] = m["default"]
        return args, (), ()

    def step_if(self, value: Any, path: str, item: dict, step_path: str):
        args = {"condition": self.expression(value, path)}
        if "then" not in item:
            self.err(step_path, "'if' needs 'then' steps")
        then = self.steps(item.get("then", []), f"{step_path}.then")
        otherwise = self.steps(item.get("else", []), f"{step_path}.else")
        return args, then, otherwise

    def step_for_each(self, value: Any, path: str, item: dict, step_path: str):
        args = {
            "items": self.expression(value, path),
            "as": self.identifier(item.get("as", "item"), f"{step_path}.as"),
            "until": self.expression(item["until"], f"{step_path}.until")
            if "until" in item
            else None,
        }
        if "do" not in item:
            self.err(step_path, "'for_each' needs 'do' steps")
        return args, self.steps(item.get("do", []), f"{step_path}.do"), ()

    def step_while(self, value: Any, path: str, item: dict, step_path: str):
        max_n = item.get("max", 20)
        if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
            self.err(f"{step_path}.max", "must be a whole number, 1 or more")
            max_n = 20
        args = {"condition": self.expression(value, path), "max": max_n}
        if "do" not in item:
            self.err(step_path, "'while' needs 'do' steps")
        return args, self.steps(item.get("do", []), f"{step_path}.do"), ()

    def step_set(self, value: Any, path: str, item: dict, step_path: str):
        m = value if isinstance(value, dict) else self.mapping(value, path, ())
        values = {}
        for key, expr in m.items():
            values[self.identifier(key, f"{path}.{key}")] = self.expression(expr, f"{path}.{key}")
        if not values:
            self.err(path, "give at least one name: expression")
        return {"values": values}, (), ()

    def step_screenshot(self, value: Any, path: str, item: dict, step_path: str):
        label = value.get("label") if isinstance(value, dict) else value
        if isinstance(value, dict):
            self.mapping(value, path, ("label",))
        return {"label": self.string(label, path) if label is not None else None}, (), ()

    def step_dismiss_if_present(self, value: Any, path: str, item: dict, step_path: str):
        args, m = self._located(value, path, ("wait_s",), ())
        wait = m.get("wait_s", 0)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
            self.err(f"{path}.wait_s", "must be a number of seconds, 0 or more")
            wait = 0
        args["wait_s"] = float(wait)
        if args["locator"] is not None:
            self.dismiss.append(args["locator"])
        return args, (), ()

    def step_finish(self, value: Any, path: str, item: dict, step_path: str):
        if isinstance(value, dict | list) or isinstance(value, bool) and not value:
            self.err(path, "give `finish: true` or a short reason")
        text = "" if value is None or value is True else self.string(value, path, template=True)
        return {"message": text}, (), ()

    def step_fail(self, value: Any, path: str, item: dict, step_path: str):
        message = value.get("message") if isinstance(value, dict) else value
        if isinstance(value, dict):
            self.mapping(value, path, ("message",))
        return {"message": self.string(message, path, template=True)}, (), ()
