"""Reading an SOP document: YAML with a line map, bounded in size, then validated.

`load_sop(text)` validates a document strictly and returns a `Sop`; every problem is reported at
once in `SopInvalid.errors` as `{"line", "path", "message"}`. The limits' values are settings
(MAX_SOP_NODES...), read where the settings are: callers pass them as :class:`SopLimits`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from shared.sop.errors import SopInvalid, SopLimitExceeded
from shared.sop.model import Sop
from shared.sop.validate import Validator

T = TypeVar("T")
V = TypeVar("V", bound=Validator)


@dataclass(frozen=True)
class SopLimits:
    """How big an SOP document may be; each field is the setting named in its comment."""

    nodes: int = 20_000  # MAX_SOP_NODES, counted after alias expansion
    depth: int = 32  # MAX_SOP_DEPTH
    steps: int = 500  # MAX_SOP_STEPS
    # Whether each regular expression must compile in RE2 (shared.sop.patterns).
    patterns: bool = True


# For documents already stored: they passed the limits in force when they were stored, and a
# task must not fail because an operator lowered a limit since. Still finite (aliases). A
# pattern stored before patterns ran on RE2 that RE2 cannot compile is refused where it runs
# (its step fails and says so), so the version stays readable and replaceable.
STORED_SOP_LIMITS = SopLimits(nodes=2_000_000, depth=100, steps=100_000, patterns=False)


def load_document(
    text: str, limits: SopLimits, validator: type[V], read: Callable[[V, Any, str], T | None]
) -> T:
    """A document (an SOP, a portal profile) read from bounded YAML by ``read(v, data, text)``,
    ``v`` a ``validator`` on the text's line map; SopInvalid lists every problem."""
    data, lines = _load_yaml(text, limits)
    v = validator(lines, check_patterns=limits.patterns)
    try:
        document = read(v, data, text)
    except RecursionError:  # a template nested past what jinja2 can walk
        message = "a template or condition is nested too deeply"
        raise SopInvalid([{"line": None, "path": "", "message": message}]) from None
    if v.errors or document is None:
        raise SopInvalid(v.errors or [{"line": None, "path": "", "message": "invalid"}])
    return document


def load_sop(text: str, limits: SopLimits | None = None) -> Sop:
    """Parse and strictly validate an SOP document; raise SopInvalid listing every problem."""
    limits = limits or SopLimits()
    sop = load_document(text, limits, Validator, Validator.document)
    if (n := len(sop.all_steps())) > limits.steps:
        raise SopLimitExceeded(
            "MAX_SOP_STEPS", limits.steps, f"the SOP has {n} steps; MAX_SOP_STEPS is {limits.steps}"
        )
    return sop


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
