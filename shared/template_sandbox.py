"""The sandbox every SOP template runs in: Jinja2's, plus bounds on what a template may cost.

An account writes its own SOPs, so a template is hostile input. Jinja2's sandbox already stops
attribute tricks and ranges over 100,000 items; on top of it a render here is stopped when

- its output passes ``max_output_chars`` (MAX_TEMPLATE_OUTPUT_BYTES),
- it runs longer than ``timeout_s`` (TEMPLATE_TIMEOUT_S), loops included, the clock looked at
  before every filter and method too (a condition or a value computed with
  ``compile_expression`` as well),
- one operation would build a value past the output bound (``'x' * 10**9``, ``10 ** 10**9``,
  a width of a million in ``%`` or ``format``, ``center(10**9)``), a list's items counted each
  time they appear, and a filter or a text's method whose result can outgrow what it was given
  (``join``, ``replace``, ``indent``, ``expandtabs``, ``translate``, a ``batch`` or ``slice``
  filler, ``lipsum``) checked before it runs (``map``, as it goes), and ``+``, ``~`` or a
  format adding more than the bound to the longest of their values,
- a list, a dict or a namespace would be written as text (shown, joined with ``~``, given to a
  filter or a test that writes it, formatted) past the bound: a list of 60,000 references to one
  long text is small, but its text is billions of characters, or
- a namespace, the one place a template keeps values from one round of a loop to the next,
  would keep a value of more than ``max_kept_chars`` (MAX_RESULT_BYTES) as text, or
- an operation or a filter would make a whole number of more digits than Python writes as text
  (4,300): such a number could be neither shown nor kept in a task's result.

Lists, dicts and sets cannot be changed in place (``append``, ``extend``, ``update``: Jinja2's
immutable sandbox), so a list grows only through the operations above (``ns.l + [x]``), each of
them bounded; ``l.extend(l)`` thirty times would otherwise fill gigabytes without a character of
output. A text cannot be made bytes (``encode``), which would pass every check on texts.

Each of these raises :class:`TemplateLimitExceeded`, a jinja2 ``SecurityError``, so callers that
already handle template errors need nothing new.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import math
import re
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import BuiltinMethodType, FrameType
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Namespace
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS
from jinja2.utils import generate_lorem_ipsum

# The deadline of the render or expression this thread is running, if any (BoundedSandbox._clock).
_clock_of_thread = threading.local()
# Python errors a hostile template can provoke, turned into template errors so that a render
# only ever raises jinja2.TemplateError: LookupError for a format's name or place its values
# lack (`'{member}'.format()`, `'%(a)s' % {}`), AttributeError for a filter given a value of
# another kind (`rows | dictsort` of a list, `wordwrap` of a number), AssertionError for a
# filter's own check of its arguments (`truncate(2)`).
_RENDER_ERRORS = (
    ArithmeticError, AssertionError, AttributeError, LookupError, RecursionError, MemoryError,
    ValueError, TypeError,
)  # fmt: skip
_PERCENT_SPEC = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
# A `%` conversion: its mapping key, if any, and its type (`%%` takes no value).
_PERCENT_FIELD = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d*))?[hlL]?(.)", re.S)
# Filters whose result can be far longer than what they are given (see _check_growth).
_GROWING_FILTERS = frozenset(
    {"do_join", "do_replace", "do_indent", "do_batch", "do_slice", "do_wordwrap", "do_urlize"}
)
# The methods that change a list, a dict or a set in place, which the immutable sandbox refuses
# (an SOP that calls one is refused when stored: shared.sop.validate).
CHANGING_METHODS = frozenset(
    {
        "add", "append", "clear", "difference_update", "discard", "extend", "insert",
        "intersection_update", "pop", "popitem", "remove", "reverse", "setdefault", "sort",
        "symmetric_difference_update", "update",
    }
)  # fmt: skip
# A text's methods that make bytes, which would escape every check on texts here (an SOP that
# calls one is refused when stored too).
BYTES_METHODS = frozenset({"encode"})
# Values whose text can be far longer than what they hold: each item may be one more reference
# to the same long text.
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace)
# Filters that take a list or a dict as it is (they pass it on, pick from it, count it or sort
# it) and never write the whole of it as text; `join` counts what it writes (_check_growth).
# Any other filter given a list or a dict writes it as text, and is checked first.
_CONTAINER_FILTERS = frozenset(
    {
        "attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items",
        "join", "last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr",
        "reverse", "select", "selectattr", "slice", "sort", "sum", "unique",
    }
)  # fmt: skip
# Jinja2's tests that write their value as text (a test added later is taken to do so too).
_CONTAINER_TESTS = frozenset(TESTS) - {"lower", "upper"}


class TemplateLimitExceeded(SecurityError):
    """A template went past one of the bounds of :class:`BoundedSandbox`."""


class _BoundedCode(CodeGenerator):
    """Jinja2's code generator, with two changes.

    - A constant that holds NaN or an infinity is written as Python can read it back. Jinja2
      computes `'NaN' | float` (or `1e999`) when it compiles, and wrote the result as `nan` or
      `inf`: names that do not exist, so the template raised NameError.
    - The sides of `~` go through :meth:`BoundedSandbox.joined_parts` before they are made
      text, as the value of a `{{ }}` goes through the environment's ``finalize``.
    """

    def visit_Const(self, node: nodes.Const, frame: Frame) -> None:
        value = node.as_const(frame.eval_ctx)
        if _has_non_finite(value):
            self.write(_source(value))
        else:
            super().visit_Const(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"{join}(environment.joined_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(k) or _has_non_finite(v) for k, v in value.items())
    return False


def _source(value: Any) -> str:
    """Python source for a constant of Jinja2's (see ``jinja2.compiler.has_safe_repr``)."""
    if isinstance(value, float):
        return f"float({str(value)!r})" if not math.isfinite(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_source, value)) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(f"{_source(v)}, " for v in value) + ")"
    if isinstance(value, set | frozenset):
        return f"{type(value).__name__}([" + ", ".join(map(_source, value)) + "])"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_source(k)}: {_source(v)}" for k, v in value.items()) + "}"
    return repr(value)


# The most digits of a whole number a template may make: Python writes no more as text
# (``sys.get_int_max_str_digits()``), and a longer one raises ValueError wherever it is shown or
# stored. The first number too long, and its bits, for the quick checks before the exact one.
_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
_FIRST_TOO_LONG = 10**_MAX_INT_DIGITS
_MAX_INT_BITS = _FIRST_TOO_LONG.bit_length()


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An ``ImmutableSandboxedEnvironment`` whose renders have bounded output, time and value
    sizes. Add filters and tests with :meth:`add_filters` and :meth:`add_tests`, which bound
    them as Jinja2's own are."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "-"})
    code_generator_class = _BoundedCode

    def __init__(
        self,
        *,
        max_output_chars: int = 64 * 1024,
        timeout_s: float = 2.0,
        max_kept_chars: int = 1024 * 1024,
        **options: Any,
    ) -> None:
        super().__init__(finalize=self.written, **options)
        self.max_output_chars = max_output_chars
        self.timeout_s = timeout_s
        self.max_kept_chars = max_kept_chars
        filters, tests = dict(self.filters), cast(dict[str, Callable[..., Any]], dict(self.tests))
        self.filters.clear()
        self.tests.clear()
        self.add_filters(**filters)
        self.add_tests(**tests)
        self.globals["range"] = self._range
        self.globals["lipsum"] = self._lipsum
        self.globals["namespace"] = _kept_namespace(self.kept)
        self.globals["dict"] = self._dict
        self.policies["json.dumps_function"] = self._json_text

    def add_filters(self, **filters: Callable[..., Any]) -> None:
        self.filters.update({name: self._bounded(name, fn) for name, fn in filters.items()})

    def add_tests(self, **tests: Callable[..., Any]) -> None:
        self.tests.update({name: self._checked_test(name, fn) for name, fn in tests.items()})

    # -- output and time ----------------------------------------------------------------------

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Template.render's join, counting characters and watching the clock as parts come."""
        out: list[str] = []
        size = 0
        with self._clock():
            for part in parts:
                size += len(part)
                if size > self.max_output_chars:
                    raise self._too_big("the rendered text")
                out.append(part)
        return "".join(out)

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> Any:
        """A condition or a value, computed under the same clock as a render. An expression
        has no loop of its own, so its time goes to filters and methods, which look at the
        clock (:meth:`_on_time`); no trace function is needed."""
        expression = super().compile_expression(source, undefined_to_none)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._clock(trace=False):
                return expression(*args, **kwargs)

        return timed

    @contextlib.contextmanager
    def _clock(self, *, trace: bool = True) -> Iterator[None]:
        """Run a render or an expression for at most ``timeout_s`` (a render inside another,
        a macro's, within the outer one's), its Python errors made template errors (so a
        render only ever raises jinja2.TemplateError)."""
        outer = getattr(_clock_of_thread, "deadline", None)
        deadline = time.monotonic() + self.timeout_s
        deadline = deadline if outer is None else min(deadline, outer)
        _clock_of_thread.deadline = deadline
        previous = sys.gettrace()
        if trace:
            sys.settrace(_deadline_tracer(deadline, self.timeout_s))
        try:
            yield
        except _RENDER_ERRORS as exc:
            raise jinja2.TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from None
        finally:
            if trace:
                sys.settrace(previous)
            _clock_of_thread.deadline = outer

    def _on_time(self) -> None:
        """Refuse to start a filter or a method once the render's time is up: a filter such as
        `wordwrap(1)` over a long page text runs for a second inside its own loop, and an
        expression may chain a hundred of them."""
        deadline = getattr(_clock_of_thread, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise _overran(self.timeout_s)

    # -- values -------------------------------------------------------------------------------

    def written(self, value: Any) -> Any:
        """``value``, about to be written as text (`{{ value }}`, a side of `~`); a list, dict
        or namespace whose text would pass the bound is refused first."""
        if isinstance(value, _CONTAINERS):
            self._check_texts((value,))
        return value

    def joined_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        """The sides of `a ~ b ~ ...`, about to be written as text and joined: each is checked
        as :meth:`written` does, and together as `+` checks two (`s ~ s ~ s ~ ...` is one
        operation)."""
        if not all(type(part) is str for part in parts):
            self._check_texts(parts)
        self._check_added(parts, "a joined text")
        return parts

    def kept(self, value: Any) -> None:
        """Check a value about to be kept in a namespace: the one place a template keeps a
        value from one round of a loop to the next, so the one place values pile up (a round
        that adds `s ~ i` to a list, 65,536 times, is gigabytes). Each holds at most
        ``max_kept_chars`` characters as text."""
        if text_size(value, self.max_kept_chars) > self.max_kept_chars:
            raise TemplateLimitExceeded(
                f"a namespace's value would hold more than {self.max_kept_chars} characters"
                " (MAX_RESULT_BYTES)"
            )

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self._on_time()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str) and isinstance(obj, BuiltinMethodType):
            args = self._check_text_method(owner, obj.__name__, args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
            if _same_kind(left, right, (int,)) and (
                left.bit_length() + right.bit_length() - 1 > _MAX_INT_BITS  # its least bits
            ):
                # `ns.n = ns.n * ns.n` squares a number each round: one multiplication of
                # numbers of 50 million bits runs in C for seconds, out of the clock's reach
                raise _too_many_digits("a product")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right * math.log2(abs(left)) > _MAX_INT_BITS + 1:
                raise _too_many_digits("a power")
        elif operator == "+" and _same_kind(left, right, (str, list, tuple)):
            # What is added to the larger side: a line added to a long text read from a page
            # is fine, a value added to itself again and again is not.
            bound = self.max_output_chars  # (the right side is usually the short one)
            if self._chars(right) > bound and self._chars(left) > bound:
                raise self._too_big("a sum")
            if isinstance(left, list):
                return _SizedList.sum(left, right, self.max_kept_chars)
        elif operator == "%" and isinstance(left, str):
            self._check_widths(_PERCENT_SPEC, left)
            values = right if isinstance(right, tuple) else (right,)
            self._check_numbers(values)
            self._check_texts(values)
            self._check_percent_fields(left, right)
        return _whole_number_checked(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # `"{:>999999999}".format(1)`: the sandbox hands out str.format through here.
        text = getattr(value, "__self__", None)
        if isinstance(text, str):
            self._check_widths(_FORMAT_SPEC, text)
        formatter = super().wrap_str_format(value)
        if formatter is None or not isinstance(text, str):
            return formatter
        by_name = value.__name__ == "format_map"

        @functools.wraps(formatter)
        def checked(*args: Any, **kwargs: Any) -> str:
            self._check_texts((*args, *kwargs.values()))  # `'{}'.format(ns.l)`
            if by_name:
                self._check_format_fields(text, (), args[0] if len(args) == 1 else {})
            else:
                self._check_format_fields(text, args, kwargs)
            return formatter(*args, **kwargs)

        return checked

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # A text made bytes would escape every check here (`'x'.encode() * 10**9` is a
        # gigabyte); nothing an SOP does needs bytes.
        if isinstance(obj, str) and attr in BYTES_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def _dict(self, *args: Any, **kwargs: Any) -> _SizedDict:
        return _SizedDict.made(self.max_kept_chars, *args, **kwargs)

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        # Up to `max` words of up to 12 letters, and a space, in each of `n` paragraphs.
        if not all(isinstance(v, int) for v in (n, min, max)) or n * max * 13 > (
            self.max_output_chars
        ):
            raise self._too_big("lipsum")
        return generate_lorem_ipsum(n=n, html=html, min=min, max=max)

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > min(self.max_output_chars, 100_000):
            raise self._too_big("a range")
        return rng

    def _bounded(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A filter that refuses a number argument past the output bound (`center(10**9)`), a
        result that outgrows what it was given, and a list or dict it would write as text past
        the bound (`ns.l | string`)."""

        signature = _signature(fn) if fn.__name__ in _GROWING_FILTERS else None
        writes_text = name not in _CONTAINER_FILTERS

        @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment marks
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._on_time()
            self._check_numbers((*args[1:], *kwargs.values()))
            if writes_text:
                self._check_texts((*args, *kwargs.values()))
            if fn.__name__ == "do_format" and args and isinstance(args[0], str):
                self._check_widths(_PERCENT_SPEC, args[0])  # `"%9999999d" | format(1)`
                self._check_percent_fields(args[0], kwargs or args[1:])
            if signature is not None:
                call = signature.bind(*args, **kwargs)
                self._check_growth(fn.__name__, call.arguments)
                args, kwargs = call.args, call.kwargs
            if fn.__name__ == "do_map" and len(args) > 1:  # (context, items, filter, ...)
                return self._mapped(fn, args[0], args[1], args[2:], kwargs)
            if fn.__name__ == "do_sum":
                return self._summed(fn, args, kwargs)
            return _whole_number_checked(fn(*args, **kwargs))  # `[n, n] | sum` doubles `n`

        return bounded

    def _checked_test(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A test that refuses a list or dict it would write as text past the bound."""
        if name in _CONTAINER_TESTS:
            return fn

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            self._check_texts((*args, *kwargs.values()))
            return fn(*args, **kwargs)

        return checked

    def _check_text_method(
        self, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """A text's own method, checked as the filter of the same work is (the arguments to
        call it with: `join`'s items are read here, once)."""
        limit = self.max_output_chars
        if name in ("center", "ljust", "rjust", "zfill"):
            self._check_numbers(args)
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int) and text.count("\t") * size > limit:
                raise self._too_big("an expanded text")
        elif name == "replace" and len(args) >= 2 and _same_kind(args[0], args[1], (str,)):
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            self._check_replace(text, args[0], args[1], count)
        elif name == "join" and args:
            given = isinstance(args[0], str | list | tuple)
            return (self._joined(args[0], len(text), given=given),)
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((self._chars(v) for v in args[0].values()), default=0)
            if len(text) * (longest - 1) > limit:
                raise self._too_big("a translated text")
        return args

    def _mapped(
        self, fn: Callable[..., Any], context: Any, items: Any, rest: Any, kwargs: Any
    ) -> Iterator[Any]:
        """`map`, stopped once what it made has outgrown what it was given by more than the
        bound: each item may pass a filter within it (`map('center', 60000)`), and 60,000
        such items are 3.6 billion characters."""
        given = [0]

        def counted() -> Iterator[Any]:
            for item in items:
                given[0] += self._chars(item)
                yield item

        made = 0
        for item in fn(context, counted(), *rest, **kwargs):
            made += self._chars(item)
            if made - given[0] > self.max_output_chars:
                raise self._too_big("a mapped list")
            yield item

    def _summed(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """`sum`: numbers as Jinja2 adds them; lists or tuples (`rows | sum(start=[])`) joined
        in one pass, bounded as `+` is. Python's sum copies the whole list at each item, so
        65,536 items of one each ran for a minute in one C call, out of the clock's reach."""
        call = _signature(fn).bind(*args, **kwargs)
        call.apply_defaults()
        start = call.arguments["start"]
        if not isinstance(start, list | tuple):
            return _whole_number_checked(fn(*args, **kwargs))  # `[n, n] | sum` doubles `n`
        items: Iterable[Any] = call.arguments["iterable"]
        attribute = call.arguments["attribute"]
        if attribute is not None:
            items = map(make_attrgetter(call.arguments["environment"], attribute), items)
        bound = self.max_kept_chars
        joined, chars = list(start), text_size(start, bound)
        for item in items:
            if not isinstance(item, type(start)):  # as Python's `list + tuple` refuses
                raise TypeError(
                    f"can only add a {type(start).__name__} to a {type(start).__name__}"
                )
            joined.extend(item)
            chars += text_size(item, bound)
            if chars > bound:
                raise TemplateLimitExceeded(
                    f"a sum would hold more than {bound} characters (MAX_RESULT_BYTES)"
                )
            self._on_time()
        if isinstance(start, tuple):
            return tuple(joined)
        made = _SizedList(joined)
        made.chars = chars
        return made

    def _check_growth(self, name: str, arguments: dict[str, Any]) -> None:
        """Refuse, before it runs, a filter whose result would be longer than what it was given
        by more than the bound: a separator between every item, a replacement for every match,
        an indent on every line, a filler in every missing place. (A long text extracted from a
        page may be given; only what a filter adds to it counts.) Items to join are read here,
        once, and passed on as a list."""
        limit = self.max_output_chars
        if name == "do_join":
            separator = arguments.get("d", "")
            self._check_texts((separator,))
            given = isinstance(arguments["value"], str | list | tuple)
            items: Iterable[Any] = arguments["value"]
            if arguments.get("attribute") is not None:
                getter = make_attrgetter(self, arguments.pop("attribute"))
                items = map(getter, items)
            arguments["value"] = self._joined(items, len(str(separator)), given=given)
        elif name == "do_replace":
            self._check_replace(
                str(arguments["s"]), arguments["old"], arguments["new"], arguments.get("count")
            )
        elif name == "do_wordwrap":
            # The wrap string, at each break: at most one a `width` of text.
            text, width = str(arguments["s"]), arguments.get("width", 79)
            wrap = arguments.get("wrapstring")
            breaks = len(text) // max(width, 1) + 1 if isinstance(width, int) else 0
            if wrap is not None and breaks * len(str(wrap)) > limit:
                raise self._too_big("a wrapped text")
        elif name == "do_urlize":
            # `target` and `rel`, in each link: at most one a word.
            words = len(str(arguments["value"]).split())
            added = sum(len(str(arguments.get(k) or "")) for k in ("target", "rel"))
            if words * added > limit:
                raise self._too_big("a text with links")
        elif name == "do_indent":
            text, width = str(arguments["s"]), arguments.get("width", 4)
            width = len(width) if isinstance(width, str) else width
            if isinstance(width, int) and (text.count("\n") + 1) * width > limit:
                raise self._too_big("an indented text")
        else:  # do_batch, do_slice: the filler, once in each missing place
            places = arguments.get("linecount", arguments.get("slices"))
            filler = arguments.get("fill_with")
            filled = places * self._chars(filler) if isinstance(places, int) else 0
            if filler is not None and filled > limit:
                raise self._too_big("a filled list")

    def _joined(self, items: Iterable[Any], separator: int, *, given: bool) -> list[Any]:
        """The items to join, read once, refused when the text joined would outgrow them by more
        than the bound. What the texts of a list already hold was given; a separator, what a
        generator makes as it goes (`map('center', ...)`), a second sight of one item, and a
        list or dict among the items (written as text here) are new."""
        kept: list[Any] = []
        seen: set[int] = set()
        grown = 0
        for item in items:
            new = id(item) in seen or not given or isinstance(item, _CONTAINERS)
            grown += separator + (self._chars(item) if new else 0)
            if grown > self.max_output_chars:
                raise self._too_big("a joined text")
            seen.add(id(item))
            kept.append(item)
        return kept

    def _check_replace(self, text: str, old: Any, new: Any, count: Any) -> None:
        old, new = str(old), str(new)
        matches = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            matches = min(matches, count)
        if matches * (len(new) - len(old)) > self.max_output_chars:
            raise self._too_big("a replaced text")

    def _check_added(self, values: Iterable[Any], what: str) -> None:
        """Refuse values about to be written into one text when what they add to the longest
        of them passes the bound: `+`'s rule, for any number of sides (`s ~ s ~ s ~ ...`, a
        format that names one value 5,000 times)."""
        sizes = [len(v) if type(v) is str else self._chars(v) for v in values]
        if sizes and sum(sizes) - max(sizes) > self.max_output_chars:
            raise self._too_big(what)

    def _check_format_fields(self, text: str, args: Any, kwargs: Any) -> None:
        """`str.format`'s fields, checked as :meth:`_check_added` does (`('{0}' * 5000)
        .format(s)`); a width given by an argument (`'{0:{1}}'`) is checked as a number."""
        fields: list[Any] = []
        auto = itertools.count()
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError:
            return  # format raises the same
        for _, name, spec, _ in parsed:
            if name is None:
                continue
            nested = [f for _, f, _, _ in string.Formatter().parse(spec or "") if f is not None]
            for place, ref in enumerate((name, *nested)):
                first = re.match(r"[^.\[]*", ref)[0]  # type: ignore[index]
                key = next(auto) if first == "" else int(first) if first.isdigit() else first
                value = _argument(args, kwargs, key)
                if place > 0:  # a width or precision
                    self._check_numbers((value,))
                fields.append(value)
        self._check_added(fields, "a formatted text")

    def _check_percent_fields(self, text: str, values: Any) -> None:
        """`%` formatting's conversions, checked as :meth:`_check_added` does
        (`('%(a)s' * 5000) % {'a': s}`)."""
        positional = values if isinstance(values, tuple) else (values,)
        place = itertools.count()
        fields = []
        for match in _PERCENT_FIELD.finditer(text):
            key, kind = match.groups()
            if kind != "%":
                fields.append(_argument(positional, values, next(place) if key is None else key))
        self._check_added(fields, "a formatted text")

    def _json_text(self, value: Any, **options: Any) -> str:
        """`tojson`'s writer: JSON written piece by piece and stopped at the bound (an
        `indent` of 60,000 would put that many spaces on every line)."""
        out: list[str] = []
        size = 0
        for chunk in json.JSONEncoder(**options).iterencode(value):
            size += len(chunk)
            if size > self.max_output_chars:
                raise self._too_big("a JSON text")
            out.append(chunk)
        return "".join(out)

    def _check_texts(self, values: Iterable[Any]) -> None:
        for value in values:
            if isinstance(value, _CONTAINERS) and self._chars(value) > self.max_output_chars:
                raise self._too_big("a list or dict written as text")

    def _check_repeat(self, seq: Any, times: Any) -> None:
        # A list's items count as often as they appear: `['x' * 60000] * 60000` is one list of
        # 60,000 items, and 3.6 billion characters once joined or shown.
        if isinstance(seq, str) and isinstance(times, int):
            grown = len(seq) * times
        elif isinstance(seq, list | tuple) and isinstance(times, int):
            grown = self._chars(seq) * (times - 1)  # (the list itself was given)
        else:
            return
        if grown > self.max_output_chars:
            raise self._too_big("a repeated value")

    def _chars(self, value: Any) -> int:
        return text_size(value, self.max_output_chars)

    def _check_numbers(self, values: Iterable[Any]) -> None:
        for value in values:
            if isinstance(value, int) and abs(value) > self.max_output_chars:
                raise self._too_big(f"the number {value}" if value < 10**12 else "a number")

    def _check_widths(self, spec: re.Pattern[str], text: str) -> None:
        for match in spec.finditer(text):
            for digits in re.findall(r"\d+", "".join(g or "" for g in match.groups())):
                if len(digits) > 9 or int(digits) > self.max_output_chars:
                    raise self._too_big("a format width")

    def _too_big(self, what: str) -> TemplateLimitExceeded:
        return TemplateLimitExceeded(
            f"{what} would pass {self.max_output_chars} characters (MAX_TEMPLATE_OUTPUT_BYTES)"
        )


def _whole_number_checked(value: Any) -> Any:
    """``value``, unless it is a whole number of more digits than can be written as text (a
    sum or a difference each round of a loop adds a digit now and then)."""
    if type(value) is int and value.bit_length() >= _MAX_INT_BITS and abs(value) >= _FIRST_TOO_LONG:
        raise _too_many_digits("a whole number")
    return value


def _too_many_digits(what: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"{what} would have more than {_MAX_INT_DIGITS} digits")


class _SizedList(list[Any]):
    """A list made by a template's `+`, which carries its :func:`text_size`, so that
    `ns.l = ns.l + [row]` a thousand times (or a `set` step's `l + [row]` in a `while`) costs
    no walk through the list at each round."""

    chars: int

    @classmethod
    def sum(cls, left: list[Any], right: list[Any], bound: int) -> _SizedList:
        """``left + right``, its size counted up to ``bound``."""
        made = cls(left)
        made.extend(right)
        made.chars = text_size(left, bound) + text_size(right, bound) - 1  # (one list, not two)
        return made


class _SizedDict(dict[Any, Any]):
    """A dict made by a template's `dict(...)`, which carries its :func:`text_size`, as
    :class:`_SizedList` does (`ns.d = dict(ns.d, **{key: value})`)."""

    chars: int

    @classmethod
    def made(cls, bound: int, *args: Any, **kwargs: Any) -> _SizedDict:
        """``dict(*args, **kwargs)``, its size counted up to ``bound``."""
        given = args[0] if len(args) == 1 and isinstance(args[0], _SizedDict) else None
        if given is None:
            plain = dict(*args, **kwargs)
            made = cls(plain)
            made.chars = text_size(plain, bound)
            return made
        made = cls(*args, **kwargs)
        made.chars = given.chars + text_size(kwargs, bound) - 1  # (one dict, not two)
        for key in kwargs.keys() & given.keys():  # a value replaced
            made.chars -= text_size(key, bound) + text_size(given[key], bound)
        return made


def _kept_namespace(kept: Callable[[Any], None]) -> type[Namespace]:
    """``namespace``, its every value checked by ``kept`` as it is set."""

    class KeptNamespace(Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 (as Namespace's)
            Namespace.__init__(*args, **kwargs)
            for value in object.__getattribute__(args[0], "_Namespace__attrs").values():
                kept(value)

        def __setitem__(self, name: str, value: Any) -> None:
            kept(value)
            super().__setitem__(name, value)

    return KeptNamespace


def _argument(args: Any, kwargs: Any, key: int | str) -> Any:
    """What a format field names (None when it names nothing: the format raises then)."""
    try:
        if isinstance(key, int):
            return args[key] if isinstance(args, tuple) else None
        return kwargs.get(key) if isinstance(kwargs, dict) else None
    except IndexError:
        return None


def _same_kind(left: Any, right: Any, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(left, kind) and isinstance(right, kind) for kind in kinds)


def text_size(value: Any, bound: int) -> int:
    """About how many characters ``value`` takes as text: a text's length, and for a list,
    tuple, set or dict the sum of its items' (each counted where it appears: a list that holds
    one long text 60,000 times counts it 60,000 times), at least one per item. Counting stops
    once past ``bound``, so it costs at most that many steps; a list or dict a template made
    with `+` or `dict(...)` carries its count, and costs one."""
    total, pending = 0, [value]
    while pending and total <= bound:
        item = pending.pop()
        if isinstance(item, _SizedList | _SizedDict):
            total += item.chars
            continue
        total += len(item) if isinstance(item, str) else 1
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        if isinstance(item, dict):
            item = itertools.chain.from_iterable(item.items())
        elif not isinstance(item, list | tuple | set | frozenset):
            continue
        pending.extend(itertools.islice(item, bound + 1))
    return total


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """How a filter is called: its own parameters, after the evaluation context that Jinja2
    passes first to a filter with both a sync and an async form (which drops it again)."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    passed = getattr(fn, "jinja_pass_arg", None) is not None
    if passed and params[0].name not in ("eval_ctx", "context", "environment"):
        first = inspect.Parameter("eval_ctx", inspect.Parameter.POSITIONAL_ONLY)
        signature = signature.replace(parameters=[first, *params])
    return signature


def _deadline_tracer(deadline: float, timeout_s: float) -> Callable[..., Any]:
    """A trace function that stops compiled template code once ``deadline`` has passed.

    Only frames of template code are traced line by line (their file name is "<template>"),
    so the cost falls on templates alone; a loop's every turn is a line event. Code outside
    them is watched where it enters a filter or a method (:meth:`BoundedSandbox._on_time`):
    tracing its calls too made an expression three times slower.
    """

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _overran(timeout_s)
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == "<template>" else None

    return calls


def _overran(timeout_s: float) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        f"the template ran longer than {timeout_s:g} s (TEMPLATE_TIMEOUT_S)"
    )
