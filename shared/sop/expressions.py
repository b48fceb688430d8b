"""Templates and conditions: one sandboxed Jinja2 environment, used to validate and to run.

Templates (values, names, notes) and conditions (``when``, ``if``, ``set``...) are Jinja2,
evaluated in :class:`~shared.template_sandbox.BoundedSandbox`: never ``eval``. An unknown name
is an error where a step's template is rendered (the step fails, naming it), and empty or
false in a condition or an outcome's notes (a variable never set counts as empty).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jinja2.meta

from shared import inputs as inputs_mod
from shared.inputs import PersonName
from shared.settings import load_settings
from shared.sop import patterns
from shared.template_sandbox import BoundedSandbox

# Whether an unknown name is an error right now (rendering a step's template) or empty.
_strict: ContextVar[bool] = ContextVar("sop_template_strict", default=False)


class SopUndefined(jinja2.ChainableUndefined):
    """An unknown name: chainable, empty and false, except inside :func:`render`, where any
    use of it raises like ``jinja2.StrictUndefined``."""

    __slots__ = ()

    def _fail(self) -> NoReturn:
        self._fail_with_undefined_error()
        raise AssertionError("unreachable")

    def __str__(self) -> str:
        return self._fail() if _strict.get() else super().__str__()

    def __iter__(self) -> Iterator[Any]:
        return self._fail() if _strict.get() else super().__iter__()

    def __len__(self) -> int:
        return self._fail() if _strict.get() else super().__len__()

    def __bool__(self) -> bool:
        return self._fail() if _strict.get() else super().__bool__()

    def __eq__(self, other: Any) -> bool:
        return self._fail() if _strict.get() else super().__eq__(other)

    def __ne__(self, other: Any) -> bool:
        return self._fail() if _strict.get() else super().__ne__(other)

    def __hash__(self) -> int:
        return self._fail() if _strict.get() else super().__hash__()

    def __contains__(self, item: Any) -> bool:
        return self._fail() if _strict.get() else False

    def __getattr__(self, name: str) -> Any:
        if not _strict.get():
            return self
        if name[:2] == "__":
            raise AttributeError(name)
        return self._fail()

    def __getitem__(self, key: Any) -> Any:
        return self._fail() if _strict.get() else self

    def __html__(self) -> str:
        return str(self)


@contextmanager
def _strictly() -> Iterator[None]:
    token = _strict.set(True)
    try:
        yield
    finally:
        _strict.reset(token)


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
        undefined=SopUndefined,
        autoescape=False,
        max_output_chars=settings.max_template_output_bytes,
        max_kept_chars=settings.max_result_bytes,
        timeout_s=settings.template_timeout_s,
    )
    env.add_filters(
        us_date=_safe_filter(inputs_mod.us_date),
        iso_date=_safe_filter(inputs_mod.norm_date),
        money=_safe_filter(inputs_mod.norm_money),
        digits=lambda v: re.sub(r"\D", "", str(v)) if v is not None else None,
        squash=lambda v: re.sub(r"\s+", " ", str(v)).strip() if v is not None else None,
    )
    # In time linear in the text, whatever the pattern (an SOP's, or one a template builds).
    env.add_tests(
        matching=lambda value, pattern: patterns.search(str(pattern), str(value or "")) is not None
    )
    env.globals["today"] = lambda: date.today().isoformat()
    return env


def strip_braces(source: str) -> str:
    """A condition without the ``{{ }}`` an author may wrap it in, as if it were a template."""
    m = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", source, re.S)
    return m[1] if m else source


@lru_cache(maxsize=2048)
def template(source: str) -> jinja2.Template:
    """A compiled template (cached)."""
    return template_env().from_string(source)


@lru_cache(maxsize=2048)
def expression(source: str) -> Any:
    """A compiled condition or value expression (cached); an unknown name gives None."""
    return template_env().compile_expression(strip_braces(source))


def parse_template(source: str) -> jinja2.nodes.Template:
    """The syntax tree of a template; raises jinja2.TemplateSyntaxError."""
    return template_env().parse(source)


def parse_expression(source: str) -> jinja2.nodes.Template:
    """The syntax tree of a condition, compiled once to check it; raises TemplateSyntaxError."""
    expression(source)
    return template_env().parse("{{ " + strip_braces(source) + " }}")


@lru_cache(maxsize=2048)
def names(source: str) -> frozenset[str]:
    """The variables a template refers to."""
    return frozenset(jinja2.meta.find_undeclared_variables(parse_template(source)))


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a step's template with `context`; raises jinja2 errors on unknown names."""
    if "{" not in source:
        return source
    with _strictly():
        return template(source).render(context)


def render_leniently(source: str, context: Mapping[str, Any]) -> str:
    """Render a template in which an unknown name is empty (an outcome's notes)."""
    return template(source).render(context)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """The value of a sandboxed expression (a condition or a `set` value); None if unknown."""
    return expression(source)(**context)


_TEMPLATE_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_PLAIN_REFERENCE = re.compile(
    r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?"
    r"(?:\s*\|\s*([a-z_]+))?\s*\}\}"
)
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})  # Jinja's, not names
# Understudy's own filters, which take one value and give text or None: applied without a render.
_PLAIN_FILTERS = frozenset({"us_date", "iso_date", "money", "digits", "squash"})


@dataclass(frozen=True)
class _Expression:
    source: str
    names: frozenset[str]
    # {{ name }}, {{ name.key }}, each maybe with one of _PLAIN_FILTERS: (name, key, filter),
    # filled without a render when it names plain text.
    reference: tuple[str, str | None, str | None] | None


def _plain_text(
    inputs: Mapping[str, Any], name: str, key: str | None, filter_name: str | None
) -> str | None:
    """The text ``{{ name }}`` or ``{{ name.key }}`` (maybe ``| filter``) renders to, when that
    is plainly a text input, a text under a key of a mapping input (one that is no attribute of
    a dict), or the first or last part of a PersonName, through a filter that gives text; else
    None, and the expression is rendered."""
    value = inputs.get(name)
    if key is not None:
        if isinstance(value, PersonName) and key in ("first", "last"):
            value = getattr(value, key)
        elif isinstance(value, dict) and not hasattr(dict, key):
            value = value.get(key)
        else:
            return None
    if isinstance(value, str) and filter_name is not None:
        value = template_env().filters[filter_name](value)
    return value if isinstance(value, str) else None


@lru_cache(maxsize=512)
def _instruction_parts(instructions: str) -> tuple[str | _Expression, ...]:
    """An SOP's summary split once into its text and its ``{{ ... }}`` expressions."""
    parts: list[str | _Expression] = []
    at = 0
    for match in _TEMPLATE_EXPRESSION.finditer(instructions):
        parts.append(instructions[at : match.start()])
        source = match.group(0)
        try:
            used = names(source)
        except jinja2.TemplateError:
            used = frozenset()  # never filled: stays as written
        plain = _PLAIN_REFERENCE.fullmatch(source)
        reference = None
        if plain and plain[1] not in _LITERALS and plain[3] in (None, *_PLAIN_FILTERS):
            reference = (plain[1], plain[2], plain[3])
        parts.append(_Expression(source, used, reference))
        at = match.end()
    parts.append(instructions[at:])
    return tuple(parts)


def fill_instructions(instructions: str, inputs: Mapping[str, Any]) -> str:
    """An SOP's summary with each ``{{ ... }}`` that names only the task's inputs filled in.

    What the agent learns on the portal (an extracted plan, a confirmation number) and optional
    inputs the task did not give stay as written. Sensitive inputs are *** in ``inputs``.
    """
    out = []
    for part in _instruction_parts(instructions):
        if isinstance(part, str):
            out.append(part)
        elif not part.names or not part.names <= inputs.keys():
            out.append(part.source)
        elif part.reference and (text := _plain_text(inputs, *part.reference)) is not None:
            out.append(text)  # what the sandbox renders for it, without a render
        else:
            try:
                out.append(render(part.source, inputs))
            except (jinja2.TemplateError, ArithmeticError, ValueError, TypeError):
                out.append(part.source)
    return "".join(out)
