"""Task input parsing: lenient `key: value` text or JSON in, normalised values out.

Clients send task `data` as free text (`member_id: W100000001\\nDOB: 01/15/1990`) or a JSON
object. `parse_task_data` turns either into a flat dict with snake_case keys; the normalisers
(`NORMALISERS`) turn one value into its canonical form or raise `InputError` with a message a
person can act on. SOP input specs name a normaliser by its key in `NORMALISERS`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


class InputError(ValueError):
    """A task input value that cannot be understood."""


class DataLimitExceeded(InputError):
    """Task data over MAX_DATA_BYTES or MAX_DATA_DEPTH; `limit` names the setting."""

    def __init__(self, limit: str, maximum: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.max = maximum


# The defaults of the MAX_DATA_BYTES and MAX_DATA_DEPTH settings.
DEFAULT_MAX_DATA_BYTES = 64 * 1024
DEFAULT_MAX_DATA_DEPTH = 8


# Keys people commonly write for the same field; applied after snake_casing.
KEY_ALIASES = {
    "date_of_birth": "dob",
    "birth_date": "dob",
    "birthdate": "dob",
    "npi": "provider_npi",
    "member": "member_id",
    "memberid": "member_id",
    "subscriber_id": "member_id",
    "patient_name": "patient",
    "claim": "claim_number",
    "claim_no": "claim_number",
    "claim_id": "claim_number",
    "icd_10": "icd10",
    "icd": "icd10",
    "diagnosis": "icd10",
    "procedure": "cpt",
    "cpt_code": "cpt",
}

SERVICE_LINE_FIELDS = ("cpt", "icd10", "charge", "service_date")
_TEXT_KEY = re.compile(r"[\w .\-/#]{1,40}")
_LINE_KEY = re.compile(r"^(?:service_)?line_?(\d+)$")
_INDEXED_KEY = re.compile(r"^(cpt|icd10|charge|service_date)_?(\d+)$")


def snake_key(text: str) -> str:
    """'Member ID', 'member-id' and 'MEMBER_ID' all become 'member_id'."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_")


def normalise_key(key: str) -> str:
    """A task data key in snake_case, with common synonyms mapped ('DOB' -> 'dob', 'NPI' ->
    'provider_npi')."""
    snake = re.sub(r"^icd_?10", "icd10", snake_key(key))
    return KEY_ALIASES.get(snake, snake)


def parse_task_data(
    raw: str | Mapping[str, Any] | None,
    *,
    max_bytes: int = DEFAULT_MAX_DATA_BYTES,
    max_depth: int = DEFAULT_MAX_DATA_DEPTH,
) -> dict[str, Any]:
    """Parse task data (text lines or a JSON object) into a flat dict of strings.

    Values are strings except `service_lines`, a list of dicts, which is also assembled from
    `line N: cpt, icd10, charge, service_date` lines and from `cpt_N`/`charge_N`/... keys.
    Data over `max_bytes` (as JSON or text) or nested deeper than `max_depth` raises
    `DataLimitExceeded`.
    """
    if raw is None:
        return {}
    size = len((raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8", "replace"))
    if size > max_bytes:
        raise DataLimitExceeded(
            "MAX_DATA_BYTES", max_bytes, f"data must be at most {max_bytes} bytes (MAX_DATA_BYTES)"
        )
    if isinstance(raw, Mapping):
        _check_depth(raw, max_depth)
        data = _from_mapping(raw)
    else:
        text = raw.strip()
        is_json = text.startswith(("{", "["))
        data = _from_mapping(_json_object(text, max_depth)) if is_json else _from_text(text)
    return _gather_service_lines(data)


def loads_json(text: str) -> Any:
    """JSON as JSON has it: Python's reader also takes NaN, Infinity and -Infinity, and reads a
    number too large for a float (``1e999``) as infinite; each is a ``json.JSONDecodeError``
    here. (An integer past Python's 4,300 digits is its ``ValueError``.)"""
    return json.loads(text, parse_constant=_not_a_json_number, parse_float=_finite)


def _not_a_json_number(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise json.JSONDecodeError(f"{text[:20]} is too large a number", text, 0)
    return value


def _json_object(text: str, max_depth: int | None = None) -> Mapping[str, Any]:
    """The JSON object in ``text``; nested at most ``max_depth`` (None: already checked)."""
    try:
        value = loads_json(text)
    except RecursionError:
        raise _too_deep(max_depth or DEFAULT_MAX_DATA_DEPTH) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"data looks like JSON but does not parse: {exc.msg}") from exc
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise InputError("data has a number with too many digits") from exc
    if max_depth is not None:
        _check_depth(value, max_depth)
    if not isinstance(value, dict):
        raise InputError("JSON data must be an object")
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth > max_depth:
                raise _too_deep(max_depth)
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)


def _too_deep(max_depth: int) -> DataLimitExceeded:
    return DataLimitExceeded(
        "MAX_DATA_DEPTH", max_depth, f"data is nested more than {max_depth} deep (MAX_DATA_DEPTH)"
    )


def _from_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        data[normalise_key(str(key))] = _stringify(value)
    return data


def _stringify(value: Any) -> Any:
    # Lists (service lines) and nested objects keep their shape; scalars become text.
    if isinstance(value, Mapping):
        return {normalise_key(str(k)): _stringify(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _from_text(text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    last_key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not _TEXT_KEY.fullmatch(key.strip()):
            # A line without a key continues the previous value (multi-line notes).
            if last_key is not None:
                data[last_key] = f"{data[last_key]}\n{line.strip()}".strip()
            continue
        last_key = normalise_key(key)
        data[last_key] = value.strip()
    return data


def mask_task_data(
    raw: str | Mapping[str, Any] | None, keys: Collection[str], mask: str = "***"
) -> str | None:
    """Task data as it is stored and shown: the values of `keys` (normalised) replaced by mask.

    The client's own wording is kept (its key spellings, its other lines); a JSON object is
    stored as JSON text. Used for sensitive inputs, whose values are kept only encrypted.
    """
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return json.dumps(_mask_mapping(raw, keys, mask))
    if not keys:
        return raw
    if raw.strip().startswith(("{", "[")):
        parsed = _json_object(raw.strip())
        masked = _mask_mapping(parsed, keys, mask)
        return raw if masked == parsed else json.dumps(masked)
    return _mask_text(raw, keys, mask)


def _mask_mapping(raw: Mapping[str, Any], keys: Collection[str], mask: str) -> dict[str, Any]:
    return {
        k: mask if v is not None and normalise_key(str(k)) in keys else v for k, v in raw.items()
    }


def _mask_text(raw: str, keys: Collection[str], mask: str) -> str:
    out: list[str] = []
    hiding = False  # inside a hidden value, whose continuation lines go too
    for line in raw.splitlines(keepends=True):
        key, sep, _value = line.partition(":")
        if line.strip() and sep and _TEXT_KEY.fullmatch(key.strip()):
            hiding = normalise_key(key) in keys
            if hiding:
                end = line[len(line.rstrip("\r\n")) :]
                line = f"{key}: {mask}{end}"
            out.append(line)
        elif not (hiding and line.strip()):
            out.append(line)
    return "".join(out)


def _gather_service_lines(data: dict[str, Any]) -> dict[str, Any]:
    lines: dict[int, dict[str, str]] = {}
    rest: dict[str, Any] = {}
    for key, value in data.items():
        if (m := _LINE_KEY.match(key)) and isinstance(value, str):
            lines.setdefault(int(m[1]), {}).update(_split_line(value))
        elif (m := _INDEXED_KEY.match(key)) and isinstance(value, str):
            lines.setdefault(int(m[2]), {})[m[1]] = value
        else:
            rest[key] = value
    if isinstance(rest.get("service_lines"), str):
        rest["service_lines"] = _service_lines_text(rest["service_lines"])
    if lines:
        rest.setdefault("service_lines", [lines[i] for i in sorted(lines)])
    return rest


def _service_lines_text(value: str) -> Any:
    value = value.strip()
    if value.startswith("["):
        try:
            return _stringify(loads_json(value))
        except json.JSONDecodeError as exc:
            raise InputError(f"service_lines is not valid JSON: {exc.msg}") from exc
    return [_split_line(part) for part in re.split(r"[\n;]+", value) if part.strip()]


def _split_line(value: str) -> dict[str, str]:
    """'99213, J06.9, $1,200.50, 2025-03-20' -> cpt, icd10, charge, service_date (in order)."""
    # A comma followed by exactly three digits is a thousands separator, not a field break.
    parts = [p.strip() for p in re.split(r"\s*[|,]\s*(?!\d{3}\b)", value.strip()) if p.strip()]
    return dict(zip(SERVICE_LINE_FIELDS, parts, strict=False))


# --- normalisers -------------------------------------------------------------------------

_DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%Y/%m/%d",
    "%Y%m%d",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%B %d %Y",
    "%d-%b-%Y",
    "%m.%d.%Y",
)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(text: str, fmt: str) -> date:
    if fmt == "%Y-%m-%d" and _ISO_DATE.fullmatch(text):
        return date.fromisoformat(text)  # the common case, at a fraction of strptime's cost
    return datetime.strptime(text, fmt).date()


def norm_date(value: str) -> str:
    """A date in a common format -> ISO 'YYYY-MM-DD'."""
    text = re.sub(r"\s+", " ", value.replace(",", " ")).strip()
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    for fmt in _DATE_FORMATS:
        try:
            parsed = _parse_date(text, fmt)
        except ValueError:
            continue
        if parsed.year < 1900:
            raise InputError(f"'{value}' is not a plausible date")
        return parsed.isoformat()
    raise InputError(f"'{value}' is not a date (use YYYY-MM-DD or MM/DD/YYYY)")


class PersonName(str):
    """A full name ('Jane Doe') that also exposes `.first` and `.last` to templates."""

    first: str
    last: str

    def __new__(cls, first: str, last: str) -> PersonName:
        obj = super().__new__(cls, f"{first} {last}")
        obj.first, obj.last = first, last
        return obj


def norm_name(value: str) -> PersonName:
    """'Jane Doe', 'Doe, Jane' or 'DOE, JANE' -> PersonName('Jane', 'Doe')."""
    text = re.sub(r"\s+", " ", value).strip()
    if "," in text:
        last, _, first = (part.strip() for part in text.partition(","))
    else:
        first, _, last = text.rpartition(" ")
    if not first or not last:
        raise InputError(f"'{value}' needs a first and a last name")
    return PersonName(_fix_case(first), _fix_case(last))


def _fix_case(part: str) -> str:
    # Only all-upper or all-lower names are re-cased; 'McDonald' is left as written.
    return part.title() if part.isupper() or part.islower() else part


def norm_npi(value: str) -> str:
    """A 10-digit NPI whose check digit passes Luhn with the 80840 prefix."""
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"\d{10}", digits):
        raise InputError(f"'{value}' is not an NPI (10 digits)")
    if not _luhn_ok("80840" + digits):
        raise InputError(f"'{value}' is not a valid NPI (check digit does not match)")
    return digits


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def norm_identifier(value: str) -> str:
    """Member ids, claim numbers: letters, digits and dashes, upper-cased, spaces removed."""
    text = re.sub(r"\s+", "", value).upper()
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9\-_.]{1,39}", text):
        raise InputError(f"'{value}' is not a valid identifier (letters, digits and dashes)")
    return text


def norm_cpt(value: str) -> str:
    """A 5-character CPT/HCPCS code such as 99213 or J3420."""
    text = value.strip().upper()
    if not re.fullmatch(r"[0-9A-Z]{5}", text):
        raise InputError(f"'{value}' is not a CPT code (5 characters)")
    return text


def norm_icd10(value: str) -> str:
    """An ICD-10 code, with its dot put back: 'j069' -> 'J06.9'."""
    text = value.strip().upper().replace(".", "")
    if not re.fullmatch(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}", text):
        raise InputError(f"'{value}' is not an ICD-10 code")
    return text if len(text) == 3 else f"{text[:3]}.{text[3:]}"


# The largest amount of money an input takes, exclusive: a trillion dollars is no claim's charge.
MAX_MONEY = Decimal(10**12)


def norm_money(value: str) -> str:
    """'$1,200.5' -> '1200.50'."""
    text = re.sub(r"[\s$,]|USD", "", value.strip(), flags=re.I)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InputError(f"'{value}' is not an amount of money") from None
    if not amount.is_finite() or amount < 0:
        raise InputError(f"'{value}' is not an amount of money")
    if amount >= MAX_MONEY:  # (past 26 digits, the cents could not even be counted)
        raise InputError(f"'{value}' is more than any amount a task holds (under {MAX_MONEY:,})")
    return f"{amount.quantize(Decimal('0.01'))}"


def norm_text(value: str) -> str:
    """Free text, trimmed."""
    return value.strip()


def norm_service_lines(value: Any) -> list[dict[str, str]]:
    """A list of service lines, each with cpt, icd10, charge and service_date."""
    if isinstance(value, str):
        value = _service_lines_text(value)
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InputError("needs at least one service line (cpt, icd10, charge, service_date)")
    lines = []
    problems = []
    for n, raw in enumerate(value, start=1):
        line, errors = _service_line(raw)
        lines.append(line)
        problems += [f"line {n}: {e}" for e in errors]
    if problems:
        raise InputError("; ".join(problems))
    return lines


_LINE_NORMALISERS: dict[str, Callable[[str], str]] = {}  # filled below, once all exist


def _service_line(raw: Any) -> tuple[dict[str, str], list[str]]:
    if not isinstance(raw, Mapping):
        return {}, ["must be an object with cpt, icd10, charge, service_date"]
    raw = {normalise_key(str(k)): str(v) for k, v in raw.items()}
    line: dict[str, str] = {}
    errors: list[str] = []
    for field_name in SERVICE_LINE_FIELDS:
        if not raw.get(field_name, "").strip():
            errors.append(f"{field_name} is required")
            continue
        try:
            line[field_name] = _LINE_NORMALISERS[field_name](raw[field_name])
        except InputError as exc:
            errors.append(f"{field_name}: {exc}")
    return line, errors


def service_lines_from_flat(data: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """A single service line from flat `cpt`, `icd10`, `charge`, `service_date` keys, if any."""
    if not any(data.get(f) for f in SERVICE_LINE_FIELDS):
        return None
    return [{f: str(data[f]) for f in SERVICE_LINE_FIELDS if data.get(f)}]


NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "date": norm_date,
    "name": norm_name,
    "npi": norm_npi,
    "member_id": norm_identifier,
    "identifier": norm_identifier,
    "cpt": norm_cpt,
    "icd10": norm_icd10,
    "money": norm_money,
    "text": norm_text,
    "service_lines": norm_service_lines,
}
_LINE_NORMALISERS.update(cpt=norm_cpt, icd10=norm_icd10, charge=norm_money, service_date=norm_date)


def us_date(value: str | date) -> str:
    """ISO date (or date) -> 'MM/DD/YYYY', the format US portals ask for."""
    parsed = value if isinstance(value, date) else date.fromisoformat(norm_date(str(value)))
    return parsed.strftime("%m/%d/%Y")
