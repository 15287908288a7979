"""Resources to and from the REST API's exact JSON names and formats.

Resources are kept as plain dicts already spelled the way the wire spells
them (camelCase keys, lowercase enum values), so what a client sent is what
it reads back. Keys that start with ``_`` are the service's private
bookkeeping and never leave it. This module holds the formats (timestamps,
ETags, ids), ``$select``, the small OData ``$filter`` language the list
operations accept, and the lenient reading of request bodies.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

from batchflow.durations import parse_duration, to_iso8601
from batchflow.local.emulator import errors

#: What the real service reports for "no limit" (TimeSpan.MaxValue).
UNLIMITED = "P10675199DT2H48M5.4775807S"

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_etag_lock = threading.Lock()
_etag_counter = itertools.count(int(time.time() * 1000) << 12)


def now() -> datetime:
    return datetime.now(timezone.utc)


#: The second the current time was last asked for in, and its date and time of day as text.
_this_second: tuple[int, str] = (-1, "")


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 with seven fractional digits and ``Z``, as the service writes times (``moment`` is UTC).

    A task gets eight timestamps of the current time on its way through: its date and time of
    day are written once per second and only the microseconds each time, a tenth of the cost
    of ``isoformat`` (which was a tenth of the service's time for a no-op task).
    """
    global _this_second
    if moment is not None:
        return moment.isoformat(timespec="microseconds")[:26] + "0Z"
    second, microsecond = divmod(time.time_ns() // 1000, 1_000_000)  # the clock datetime.now reads
    known = _this_second
    if known[0] != second:
        known = _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{known[1]}.{microsecond:06d}0Z"


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}")


def parse_timestamp(text: str) -> datetime:
    """Read back a time written by :func:`timestamp`; ValueError for any other text.

    (``fromisoformat`` alone would read dates, offsets and other ISO forms too; ``strptime``, which
    checks the form itself, took eight times as long for each row a listing compares.)"""
    if not _TIMESTAMP.fullmatch(text, 0, 26):
        raise ValueError(f"not a timestamp: {text!r}")
    return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc)


def http_date(text: str) -> str:
    """An RFC 1123 date for headers such as ``Last-Modified`` from a stored timestamp."""
    return format_datetime(parse_timestamp(text), usegmt=True)


def new_etag() -> str:
    """An opaque, strictly increasing ETag in the service's ``0x8D…`` style."""
    with _etag_lock:
        return f"0x{next(_etag_counter):X}"


def stamp(resource: dict[str, Any]) -> None:
    """Give ``resource`` a fresh ETag and ``lastModified``: call on every change."""
    resource["eTag"] = new_etag()
    resource["lastModified"] = timestamp()


def set_state(resource: dict[str, Any], state: str, keep_previous: bool = True) -> None:
    """Move ``resource`` to ``state``, recording the previous state as the service does."""
    if resource.get("state") == state:
        return
    at = timestamp()
    if keep_previous and "state" in resource:
        resource["previousState"] = resource["state"]
        resource["previousStateTransitionTime"] = resource.get("stateTransitionTime", at)
    resource["state"] = state
    resource["stateTransitionTime"] = at
    stamp(resource)


def set_node_state(node: dict[str, Any], state: str) -> None:
    """Move a compute node to ``state``. A node, unlike a pool, job or task, has no
    ``previousState``, ``eTag`` or ``lastModified`` in the API."""
    if node.get("state") != state:
        node["state"] = state
        node["stateTransitionTime"] = timestamp()


def check_id(value: Any, name: str = "id") -> str:
    """Validate a pool, job or task id: 1-64 characters of letters, digits, ``_`` and ``-``."""
    if value is None or value == "":
        raise errors.missing_property(name)
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.invalid_property(name, value, "ids are 1-64 letters, digits, hyphens and underscores")
    return value


def duration(value: Any, name: str) -> timedelta | None:
    """Parse an ISO 8601 duration field; ``None`` when absent."""
    if value is None:
        return None
    try:
        return parse_duration(str(value))
    except ValueError as error:
        raise errors.invalid_property(name, value, str(error)) from error


def normalize_duration(value: Any, name: str) -> str | None:
    """Re-emit a duration the way the service would write it (e.g. ``PT15M``)."""
    delta = duration(value, name)
    if delta is None:
        return None
    if delta >= timedelta(days=10675199):
        return UNLIMITED
    return to_iso8601(delta)


def public(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as clients see it: private ``_`` keys removed."""
    return {key: value for key, value in resource.items() if not key.startswith("_")}


def select(resource: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Apply ``$select``: keep only the named top-level properties."""
    if not fields:
        return resource
    wanted = {name.strip() for name in fields.split(",") if name.strip()}
    return {key: value for key, value in resource.items() if key in wanted}


def lenient_keys(body: Any, known: list[str]) -> Any:
    """Map keys that differ only in case to the spelling the service uses.

    The real service is believed to read property names without regard to
    case (see the reference's open points); accepting both costs nothing.
    """
    if not isinstance(body, dict):
        return body
    by_lower = {name.lower(): name for name in known}
    return {by_lower.get(key.lower(), key): value for key, value in body.items()}


# --- $filter -----------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<datetime>(?i:datetime)'[^']*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_/.]*))"
)


def _parse_time(text: str) -> datetime:
    """A ``datetime'...'`` literal's time, as clients write it (any fraction, ``Z`` or an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _as_literal_type(value: Any, literal: Any) -> Any:
    """A resource's value made comparable with a ``datetime'...'`` literal (times are stored as text)."""
    if isinstance(literal, datetime) and isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            return None
    return value


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
Predicate = Callable[[dict[str, Any]], bool]


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read the filter at {text[position:]!r}")
        position = match.end()
        kind = match.lastgroup
        raw = match.group(kind)
        if kind == "string":
            tokens.append(("literal", raw[1:-1].replace("''", "'")))
        elif kind == "datetime":
            tokens.append(("literal", _parse_time(raw[len("datetime'") : -1])))
        elif kind == "number":
            tokens.append(("literal", float(raw) if "." in raw else int(raw)))
        elif kind == "punct":
            tokens.append((raw, raw))
        elif raw in ("true", "false"):
            tokens.append(("literal", raw == "true"))
        elif raw == "null":
            tokens.append(("literal", None))
        else:
            tokens.append(("word", raw))
    return tokens


def _lookup(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True)
class Filter:
    """A compiled ``$filter``: the exact ``predicate``, and what any match must have.

    ``state`` and ``changed_since`` are set when the filter is a conjunction
    that includes ``state eq '…'`` or ``stateTransitionTime ge|gt datetime'…'``;
    a store can then read only the rows its indexes give for them and still
    apply ``predicate`` to each, so the answer is the same as a full scan's.
    """

    predicate: Predicate
    state: str | None = None
    changed_since: datetime | None = None


# What a filter's term says every match has: {"state": str, "changed_since": datetime}.
_Narrowing = dict[str, Any]


class _FilterParser:
    """Recursive descent over: or, and, not, parentheses, comparisons, startswith/endswith.

    Each rule returns its predicate and its narrowing (see :class:`Filter`):
    ``and`` keeps what any of its terms says, ``or`` and ``not`` say nothing.
    """

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (kind is not None and token[0] != kind):
            raise ValueError(f"expected {kind or 'more'} in the filter")
        self.position += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() == word

    def parse(self) -> Filter:
        predicate, narrowing = self.parse_or()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()[1]!r} in the filter")  # type: ignore[index]
        return Filter(predicate, narrowing.get("state"), narrowing.get("changed_since"))

    def parse_or(self) -> tuple[Predicate, _Narrowing]:
        parts = [self.parse_and()]
        while self.is_word("or"):
            self.take()
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]
        predicates = [predicate for predicate, _ in parts]
        return (lambda r: any(p(r) for p in predicates)), {}

    def parse_and(self) -> tuple[Predicate, _Narrowing]:
        parts = [self.parse_not()]
        while self.is_word("and"):
            self.take()
            parts.append(self.parse_not())
        if len(parts) == 1:
            return parts[0]
        predicates = [predicate for predicate, _ in parts]
        narrowing: _Narrowing = {}
        for _, said in parts:
            if "state" in said:
                narrowing.setdefault("state", said["state"])
            if "changed_since" in said:
                narrowing["changed_since"] = max(
                    said["changed_since"], narrowing.get("changed_since", said["changed_since"])
                )
        return (lambda r: all(p(r) for p in predicates)), narrowing

    def parse_not(self) -> tuple[Predicate, _Narrowing]:
        if self.is_word("not"):
            self.take()
            inner, _ = self.parse_not()
            return (lambda r: not inner(r)), {}
        return self.parse_primary()

    def parse_primary(self) -> tuple[Predicate, _Narrowing]:
        token = self.peek()
        if token is not None and token[0] == "(":
            self.take()
            inner = self.parse_or()
            self.take(")")
            return inner
        name = self.take("word")[1]
        if name.lower() in ("startswith", "endswith"):
            self.take("(")
            path = self.take("word")[1]
            self.take(",")
            literal = str(self.take("literal")[1])
            self.take(")")
            if name.lower() == "startswith":
                return (lambda r: str(_lookup(r, path) or "").startswith(literal)), {}
            return (lambda r: str(_lookup(r, path) or "").endswith(literal)), {}
        operator = self.take("word")[1].lower()
        if operator not in _COMPARE:
            raise ValueError(f"unknown operator {operator!r} in the filter")
        literal = self.take("literal")[1]
        compare = _COMPARE[operator]
        narrowing: _Narrowing = {}
        if name == "state" and operator == "eq" and isinstance(literal, str):
            narrowing["state"] = literal
        elif name == "stateTransitionTime" and operator in ("ge", "gt") and isinstance(literal, datetime):
            narrowing["changed_since"] = literal
        return (lambda r: compare(_as_literal_type(_lookup(r, name), literal), literal)), narrowing


def compile_filter(text: str | None) -> Filter | None:
    """Turn an OData ``$filter`` into a :class:`Filter`, or raise 400."""
    if not text:
        return None
    try:
        return _FilterParser(_tokenize(text)).parse()
    except ValueError as error:
        raise errors.invalid_query("$filter", text, str(error)) from error
