"""FHIR date/dateTime/instant values as inclusive microsecond ranges for date search.

A FHIR date value stands for the whole interval its precision covers: ``2024`` is the year 2024,
``2024-03-05T10:00`` is one minute (https://hl7.org/fhir/R4/search.html#date). Ranges are integer
microseconds since 1970-01-01T00:00Z, so the store compares plain integers. A value without a zone
is read as Europe/Oslo local time (ARCHITECTURE.md, Principles 7), honouring daylight saving time.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from akson.fhir.outcome import FhirError

OSLO = ZoneInfo("Europe/Oslo")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: 0001-01-01T00:00:00Z, the lowest instant any range starts at.
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _US
#: 9999-12-31T23:59:59.999999Z, the highest instant any range ends at.
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _US

# Any precision from year down to fractions of a second; seconds are optional after hh:mm because
# search values (and some clients) use minute precision.
_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _bad(value: str, why: str) -> FhirError:
    return FhirError(400, f"Invalid date/time value '{value}': {why}", "value")


def _us(dt: datetime) -> int:
    # Aware-datetime subtraction never converts to a UTC datetime, so year 1 in Oslo (UTC year 0)
    # does not overflow.
    return (dt - _EPOCH) // _US


@lru_cache(maxsize=256)
def _zone(tz: str | None) -> tzinfo:
    if tz is None:
        return OSLO
    if tz == "Z":
        return UTC
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError("zone offset out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if tz[0] == "-" else offset)


@lru_cache(maxsize=8192)
def date_range(value: str) -> tuple[int, int]:
    """Return the inclusive (low, high) microsecond range a FHIR date/dateTime/instant covers.

    Accepts ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm``, ``…:ss``, ``…:ss.f+`` with
    an optional ``Z`` or ``±hh:mm`` zone; without a zone the value is Europe/Oslo local time.
    Fractions finer than a microsecond are truncated. The result is clamped to
    [:data:`MIN_US`, :data:`MAX_US`]. Raises :class:`FhirError` (400, ``value``) when malformed.
    See https://hl7.org/fhir/R4/search.html#date and https://hl7.org/fhir/R4/datatypes.html#dateTime.
    """
    if not isinstance(value, str):
        raise _bad(str(value), "not a string")
    return _date_range(value)


@lru_cache(maxsize=8192)
def _date_range(value: str) -> tuple[int, int]:
    """`date_range` of a string, remembered: a bulk load meets the same instants again and
    again (every vital sign of one encounter carries its time)."""
    m = _DATE_RE.fullmatch(value)
    if m is None:
        raise _bad(value, "expected YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]]")
    ys, mos, ds, hs, mis, ss, frac, tz = m.groups()
    try:
        zone = _zone(tz)
        year = int(ys)
        if mos is None:
            start = datetime(year, 1, 1)
            end = datetime(year, 12, 31, 23, 59, 59, 999999)
        elif ds is None:
            month = int(mos)
            last = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
            start = datetime(year, month, 1)
            end = datetime(year, month, last, 23, 59, 59, 999999)
        elif hs is None:
            start = datetime(year, int(mos), int(ds))
            end = start.replace(hour=23, minute=59, second=59, microsecond=999999)
        else:
            second = int(ss) if ss is not None else 0
            # A leap second (:60, allowed by the R4 regex) is folded into :59.
            start = datetime(year, int(mos), int(ds), int(hs), int(mis), min(second, 59))
            if ss is None:
                end = start.replace(second=59, microsecond=999999)
            elif frac is None:
                end = start.replace(microsecond=999999)
            else:
                digits = frac[:6]
                micro = int(digits.ljust(6, "0"))
                start = start.replace(microsecond=micro)
                end = start.replace(microsecond=micro + 10 ** (6 - len(digits)) - 1)
    except ValueError as exc:
        raise _bad(value, str(exc)) from None
    low = _us(start.replace(tzinfo=zone))
    high = _us(end.replace(tzinfo=zone))
    return max(low, MIN_US), min(high, MAX_US)


def period_range(start: str | None, end: str | None) -> tuple[int, int]:
    """Range of a FHIR Period: from the low of ``start`` to the high of ``end``.

    A missing start is open towards :data:`MIN_US`, a missing end towards :data:`MAX_US`
    (https://hl7.org/fhir/R4/datatypes.html#Period, https://hl7.org/fhir/R4/search.html#date).
    """
    low = date_range(start)[0] if start else MIN_US
    high = date_range(end)[1] if end else MAX_US
    return low, high


def now_us() -> int:
    """The current time as integer microseconds since 1970-01-01T00:00Z."""
    return time.time_ns() // 1000


@lru_cache(maxsize=64)  # a bulk load stamps thousands of resources with one time
def to_instant(us: int) -> str:
    """Format microseconds since the epoch as an R4 instant, e.g. ``2024-03-05T09:00:00.123456Z``.

    Always six fraction digits in UTC, so ``date_range(to_instant(x)) == (x, x)``; this is what the
    server writes into ``meta.lastUpdated`` (https://hl7.org/fhir/R4/datatypes.html#instant).
    """
    dt = _EPOCH + timedelta(microseconds=us)
    # Not strftime: glibc's %Y drops the zero padding of years below 1000.
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond:06d}Z"
    )
