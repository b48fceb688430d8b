"""The rules every SOP document follows: the validator walks the loaded YAML, collects every
problem with its path and line, and builds the model (each step kind parses itself, with the
validator's help: see :mod:`shared.sop.model`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.meta

from shared import inputs as inputs_mod
from shared.sop import expressions, patterns
from shared.sop.model import (
    DIALOG_ANSWERS,
    LETTER_CASES,
    LOCATOR_KINDS,
    LOCATOR_OPTIONS,
    STEP_KINDS,
    STEP_TYPES,
    VALUE_TEST_REFUSED,
    ForEachStep,
    GotoStep,
    InputSpec,
    Locator,
    LoginStep,
    OutcomeRule,
    OutcomeStatus,
    PortalErrorPattern,
    ReviewStep,
    Screenshots,
    Sop,
    SopSettings,
    Step,
    WhileStep,
    flatten,
    selector_tests_value,
)
from shared.ssrf import UrlRefused, url_origin
from shared.template_sandbox import BYTES_METHODS, CHANGING_METHODS

_COMMON_STEP_KEYS = ("name", "timeout_s", "irreversible", "optional", "when", "dialogs")
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

# The longest a step, a wait or a sign-in may wait, in seconds (the task's own time limit,
# TASK_TIME_LIMIT_S, comes first), and the most sign-ins a task may make again: each larger
# value is a typing slip, refused when the SOP is stored.
MAX_WAIT_S = 3600
MAX_RELOGINS = 10

# The names the agent gives every template beside the inputs and the variables steps set: the
# task's files, a for_each's `loop` (index, first, last...) and what an end_if's match `seen`.
AGENT_NAMES = frozenset({"files", "loop", "seen"})

# A URL's scheme ("file:", "javascript:"...); "{{ x }}" templates are checked when they run.
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)")


def offsite_urls(sop: Sop, origins: set[str]) -> list[dict[str, Any]]:
    """Errors ({line, path, message}) for each literal absolute URL a goto or login step opens
    outside ``origins`` (normalised ``scheme://host[:port]``)."""
    errors = []
    for step in sop.all_steps():
        url = step.url.strip() if isinstance(step, GotoStep | LoginStep) else ""
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


def _parent(path: str) -> str:
    m = re.match(r"^(.*)(\.[^.\[\]]+|\[\d+\])$", path)
    return m[1] if m else ""


class Validator:
    """Walks the loaded document, collecting every error, and builds the model."""

    def __init__(self, lines: dict[str, int], *, check_patterns: bool = True) -> None:
        self.lines = lines
        self.check_patterns = check_patterns
        self.errors: list[dict[str, Any]] = []
        self.dismiss: list[Locator] = []
        # Sensitive inputs' names and aliases: no template or condition may name them.
        self.sensitive: dict[str, str] = {}
        # The names templates and conditions read (each with where), and the variables steps
        # set (extract's and wait_for's `into`, for_each's `as`, set's names): see unknown_names.
        self.reads: list[tuple[str, str]] = []
        self.defined: set[str] = set()

    def line(self, path: str) -> int | None:
        """The line of ``path``, or of the nearest enclosing path the document has."""
        probe = path
        while probe not in self.lines and probe:
            probe = _parent(probe)
        return self.lines.get(probe)

    def err(self, path: str, message: str) -> None:
        self.errors.append({"line": self.line(path), "path": path, "message": message})

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
            tree = expressions.parse_template(text)
            # Reading its names compiles it: an unknown filter ("| us_dat") is found here.
            self.checked(tree, path)
        except jinja2.TemplateSyntaxError as exc:  # TemplateAssertionError included
            self.err(path, f"template error: {exc.message}")
        except RecursionError:
            self.err(path, "template error: nested too deeply")

    def expression(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if text:
            try:
                tree = expressions.parse_expression(text)
            except jinja2.TemplateSyntaxError as exc:
                self.err(path, f"condition error: {exc.message}")
            except RecursionError:
                self.err(path, "condition error: nested too deeply")
            else:
                self.checked(tree, path)
        return text

    def checked(self, tree: jinja2.nodes.Template, path: str) -> None:
        """What a parsed template or condition may not do: read a sensitive input, change a
        list or dict in place or make bytes (the sandbox would refuse either as it runs), or
        test with a pattern RE2 cannot compile (one it builds as it runs is checked then)."""
        self.no_sensitive(tree, path)
        self.reads += ((name, path) for name in sorted(jinja2.meta.find_undeclared_variables(tree)))
        for call in tree.find_all(jinja2.nodes.Call):
            method = call.node.attr if isinstance(call.node, jinja2.nodes.Getattr) else None
            if method in CHANGING_METHODS:
                self.err(
                    path,
                    f"template error: .{method}() would change a list, dict or set in place,"
                    " which a template may not do; build a new value instead"
                    " (`{% set ns.l = ns.l + [x] %}`, `dict(d, key=value)`)",
                )
            elif method in BYTES_METHODS:
                self.err(
                    path,
                    f"template error: .{method}() would make bytes, which a template may not use",
                )
        for test in tree.find_all(jinja2.nodes.Test):
            pattern = test.args[0] if test.name == "matching" and test.args else None
            literal = pattern.value if isinstance(pattern, jinja2.nodes.Const) else None
            if isinstance(literal, str):
                self.pattern(literal, path, "matching: ")

    def pattern(self, pattern: str, path: str, what: str = "") -> bool:
        """Whether ``pattern`` can run (RE2 compiles it); if not, the error says why."""
        why = patterns.problem(pattern) if self.check_patterns else None
        if why:
            self.err(path, f"{what}{why}")
        return why is None

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

    def seconds(self, value: Any, path: str) -> float:
        """A wait: a number of seconds more than 0 and at most MAX_WAIT_S (``.nan`` and
        ``.inf``, which YAML reads as numbers, are neither)."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (0 < value <= MAX_WAIT_S)  # also false for NaN
        ):
            self.err(path, f"must be a number of seconds greater than 0 and at most {MAX_WAIT_S}")
            return 1.0
        return float(value)

    def whole(self, value: Any, path: str, minimum: int, maximum: int, what: str) -> int | None:
        """A whole number from ``minimum`` to ``maximum``, else None and an error that says
        ``what`` it counts."""
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.err(path, f"must be a whole number from {minimum} to {maximum} ({what})")
            return None
        return value

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
        self.check_review(steps, verify)
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
            warnings=self.unknown_names(inputs),
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
            elif "\\" in base_url:
                self.err(
                    f"{path}.base_url", "may not hold a backslash: write / (a browser reads it so)"
                )
            else:
                try:
                    url_origin(base_url)
                except UrlRefused as exc:
                    self.err(f"{path}.base_url", f"is not a usable address: {exc}")
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
            aliases = (
                inputs_mod.normalise_key(self.string(a, f"{p}.aliases"))
                for a in self.sequence(m.get("aliases", []), f"{p}.aliases")
            )
            specs.append(
                InputSpec(
                    name=name,
                    format=fmt,
                    required=self.boolean(m.get("required", False), f"{p}.required"),
                    # each once, and never the name itself (a common synonym of it, such as
                    # 'member' for member_id, is read as the name for every input already)
                    aliases=tuple(a for a in dict.fromkeys(aliases) if a != name),
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
        allowed = ("step_timeout_s", "screenshots", "max_relogins", "dismiss", "dialogs")
        m = self.mapping(value if value is not None else {}, path, allowed)
        screenshots = self.string(m.get("screenshots", "failures"), f"{path}.screenshots")
        if screenshots not in set(Screenshots):
            self.err(f"{path}.screenshots", "must be every_step or failures")
            screenshots = "failures"
        relogins = self.whole(
            m.get("max_relogins", 2), f"{path}.max_relogins", 0, MAX_RELOGINS, "sign-ins again"
        )
        dismiss = [
            self.locator(item, f"{path}.dismiss[{i}]")
            for i, item in enumerate(self.sequence(m.get("dismiss", []), f"{path}.dismiss"))
        ]
        return SopSettings(
            step_timeout_s=self.seconds(m.get("step_timeout_s", 10.0), f"{path}.step_timeout_s"),
            screenshots=Screenshots(screenshots),
            max_relogins=2 if relogins is None else relogins,
            dismiss=tuple(d for d in dismiss if d) + tuple(self.dismiss),
            dialogs=self.dialogs(m.get("dialogs", "accept"), f"{path}.dialogs"),
        )

    def dialogs(self, value: Any, path: str) -> str:
        """How steps answer the page's dialogs: one of DIALOG_ANSWERS."""
        if value not in DIALOG_ANSWERS:
            self.err(path, "must be accept (a dialog is answered OK) or dismiss (Cancel)")
            return "accept"
        return str(value)

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
            if not self.pattern(pattern, p):
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
        irreversible = [s for s in flatten(steps) if s.irreversible]
        if irreversible and not verify:
            self.err(irreversible[0].path, "an irreversible step needs a 'verify' section")
        for step in flatten(verify):
            if step.irreversible:
                self.err(step.path, "verify steps must not be irreversible")

    def check_review(self, steps: tuple[Step, ...], verify: tuple[Step, ...]) -> None:
        """One review point, on the way to the irreversible step: it pauses the task once, and
        an approval lets every later step run (a review in a loop, after the submit or in
        verify could not mean that)."""
        order = flatten(steps)
        reviews = [s for s in order if isinstance(s, ReviewStep)]
        for extra in reviews[1:]:
            self.err(extra.path, "an SOP has at most one review step")
        for step in flatten(verify):
            if isinstance(step, ReviewStep):
                self.err(step.path, "verify steps cannot pause for review")
        for loop in (s for s in order if isinstance(s, ForEachStep | WhileStep)):
            for step in flatten(loop.steps):
                if isinstance(step, ReviewStep):
                    self.err(step.path, "a review step cannot be inside a loop")
        for review in reviews[:1]:
            if review.irreversible or review.optional:
                self.err(review.path, "a review step cannot be irreversible or optional")
            if any(s.irreversible for s in order[: order.index(review)]):
                self.err(review.path, "a review step must come before the irreversible step")

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
        cls = STEP_TYPES[kind]
        self.mapping(item, path, (kind, *_COMMON_STEP_KEYS, *cls.siblings))
        fields = cls.parse(self, item[kind], p, item)
        timeout = item.get("timeout_s")
        return cls(
            path=p,
            line=self.lines.get(p),
            name=(
                self.string(item["name"], f"{path}.name", template=True) if "name" in item else None
            ),
            timeout_s=self.seconds(timeout, f"{path}.timeout_s") if timeout is not None else None,
            irreversible=self.boolean(item.get("irreversible", False), f"{path}.irreversible"),
            optional=self.boolean(item.get("optional", False), f"{path}.optional"),
            when=self.expression(item["when"], f"{path}.when") if "when" in item else None,
            dialogs=self.dialogs(item["dialogs"], f"{path}.dialogs") if "dialogs" in item else None,
            **fields,
        )

    def locator(self, value: Any, path: str, extra: tuple[str, ...] = ()) -> Locator | None:
        m = self.mapping(value, path, (*LOCATOR_KINDS, *LOCATOR_OPTIONS, *extra))
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
        case = self.letter_case(m, path)
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
            case=case,
        )

    def letter_case(self, m: Mapping[str, Any], path: str) -> str | None:
        """A locator's or text condition's `case`: sensitive or insensitive (the default)."""
        if "case" not in m:
            return None
        case = self.string(m["case"], f"{path}.case")
        if case not in LETTER_CASES:
            self.err(f"{path}.case", f"must be {' or '.join(LETTER_CASES)}")
            return None
        return case

    def located(
        self, value: Any, path: str, extra: tuple[str, ...], required: tuple[str, ...]
    ) -> tuple[dict[str, Any], dict]:
        """A locator step's fields so far ({"locator": ...}) and its mapping, to read more."""
        loc = self.locator(value, path, extra)
        fields: dict[str, Any] = {"locator": loc}
        if isinstance(value, dict):
            for key in required:
                if key not in value:
                    self.err(path, f"'{key}' is required")
        return fields, (value if isinstance(value, dict) else {})

    def page_url(self, url: str, path: str) -> None:
        """A page address the SOP gives literally may only be an http(s) one (the portal's
        origins are checked by :func:`offsite_urls`, which knows them)."""
        text = url.strip()
        scheme = _URL_SCHEME.match(text)
        if scheme and scheme.group(1).lower() not in ("http", "https"):
            self.err(path, f"goto may open only the portal's http(s) pages, not a {scheme[0]} URL")
        elif "\\" in text:
            # a browser reads a backslash as / ("/\\host/x" is another host)
            self.err(path, "a URL may not hold a backslash: write / (a browser reads it so)")
        elif scheme and not text[len(scheme[0]) :].startswith("//"):
            # a browser reads "http:/host/x" and "http:host" as another host, or not at all
            self.err(path, f"write a full URL as {scheme[1].lower()}://host/path")
        elif text.startswith("//"):
            # a browser reads "//host/x" as another host; the agent would open the portal's /x
            self.err(
                path,
                "a URL starting with // names a host: give the portal's path (/x) or a full"
                " https:// URL",
            )

    def condition(self, value: Any, path: str) -> dict[str, Any]:
        allowed = ("visible", "gone", "text", "url_contains", "any_of", "as", "case")
        m = self.mapping(value, path, allowed)
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
        if "case" in m:
            if key != "text":
                self.err(f"{path}.case", "goes with text (a locator takes its own case)")
            out["case"] = self.letter_case(m, path)
        return out

    def identifier(self, value: Any, path: str) -> str:
        """A variable's name, as a step that sets it gives it."""
        text = self.string(value, path)
        if not _IDENT.fullmatch(text or "-"):
            self.err(path, "must be a variable name (letters, digits, underscores)")
        self.defined.add(text)
        return text

    def unknown_names(self, inputs: tuple[InputSpec, ...]) -> tuple[dict[str, Any], ...]:
        """A warning ({line, path, message}) for each name a template or condition reads that
        is no input, no variable a step sets and nothing the agent provides: most often a typo.

        A warning, not an error: a task's data fields that the SOP does not declare reach its
        templates too, so the name may be one the client always sends.
        """
        known = {key for spec in inputs for key in spec.keys}
        known |= self.defined | AGENT_NAMES | set(expressions.template_env().globals)
        candidates = sorted(known - set(expressions.template_env().globals))
        warnings: list[dict[str, Any]] = []
        seen: set[str] = set()
        for name, path in self.reads:
            if name in known or name in seen:
                continue
            seen.add(name)
            close = difflib.get_close_matches(name, candidates, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            places = sum(1 for n, _ in self.reads if n == name)
            more = f"; read in {places} places" if places > 1 else ""
            warnings.append(
                {
                    "line": self.line(path),
                    "path": path,
                    "message": f"'{name}' is no input and no variable a step sets{hint}: unless "
                    "each task's data has that field, a template that uses it fails its step "
                    f"and a condition reads it as empty{more}",
                }
            )
        return tuple(warnings)
