"""Parse and print durations: the readable form of workflow files and ISO 8601.

Workflow files write durations as ``90s``, ``20m``, ``2h``, ``1h30m`` or
``7d``; ISO 8601 (``PT20M``, ``P1DT2H``) is accepted too, because that is
what the Batch REST API sends and what some users will paste. Both the
workflow model and the local Batch service use this module, so the two can
never disagree on what a duration means.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_READABLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_READABLE_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

#: The regular expression of schemas/workflow.schema.json for a duration (a test keeps the two equal).
SCHEMA_PATTERN = (
    r"^(?:(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+"
    r"|P(?!$)(?:\d+(?:\.\d+)?W)?(?:\d+(?:\.\d+)?D)?"
    r"(?:T(?=\d)(?:\d+(?:\.\d+)?H)?(?:\d+(?:\.\d+)?M)?(?:\d+(?:\.\d+)?S)?)?)$"
)

HINT = "use a duration such as 90s, 20m, 2h, 1h30m, 7d or ISO 8601 (PT20M)"


@lru_cache(maxsize=1024)  # a sweep of 100,000 tasks gives each the same few durations
def parse_duration(text: str) -> timedelta:
    """Return the :class:`~datetime.timedelta` that ``text`` means.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("PT15M00S")
    datetime.timedelta(seconds=900)

    :raises ValueError: with :data:`HINT` when ``text`` is not a duration.
    """
    value = text.strip()
    if _READABLE.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _READABLE_PART.findall(value))
        return timedelta(seconds=seconds)
    match = _ISO.match(value.upper())
    if match:
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(**parts)
    raise ValueError(f"{text!r} is not a duration: {HINT}")


@lru_cache(maxsize=1024)
def format_duration(delta: timedelta) -> str:
    """Print ``delta`` in the readable form, largest units first: ``1h30m``."""
    total = delta.total_seconds()
    if total <= 0:
        return "0s"
    out = []
    whole = int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    millis = round((total - int(total)) * 1000)
    if millis:
        out.append(f"{millis}ms")
    return "".join(out)


def to_iso8601(delta: timedelta) -> str:
    """Print ``delta`` as ISO 8601, the form the Batch REST API uses: ``P1DT2H3M4.5S``."""
    total = delta.total_seconds()
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{int(days)}D"
    out += "T" if (hours or minutes or seconds or not days) else ""
    if hours:
        out += f"{int(hours)}H"
    if minutes:
        out += f"{int(minutes)}M"
    if seconds or out.endswith("T"):
        out += f"{seconds:g}S" if seconds != int(seconds) else f"{int(seconds)}S"
    return out
