"""Tests for akson.fhir.dates: precision ranges, Oslo default zone with DST, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from akson.fhir.dates import MAX_US, MIN_US, date_range, now_us, period_range, to_instant
from akson.fhir.outcome import FhirError


def us(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    micro: int = 0,
) -> int:
    """Microseconds since the epoch of a UTC wall-clock time."""
    dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // datetime.resolution


def test_year_is_whole_year_in_oslo_winter_time() -> None:
    assert date_range("2024") == (us(2023, 12, 31, 23), us(2024, 12, 31, 22, 59, 59, 999999))


def test_month_spans_dst_change() -> None:
    # March 2024 starts in CET (+01:00) and ends in CEST (+02:00).
    assert date_range("2024-03") == (us(2024, 2, 29, 23), us(2024, 3, 31, 21, 59, 59, 999999))


def test_february_leap_year() -> None:
    low, high = date_range("2024-02")
    assert to_instant(high) == "2024-02-29T22:59:59.999999Z"
    assert to_instant(low) == "2024-01-31T23:00:00.000000Z"


def test_day_in_summer_is_cest() -> None:
    assert date_range("2024-07-01") == (us(2024, 6, 30, 22), us(2024, 7, 1, 21, 59, 59, 999999))


def test_dst_transition_days_are_23_and_25_hours() -> None:
    spring_low, spring_high = date_range("2024-03-31")
    autumn_low, autumn_high = date_range("2024-10-27")
    hour = 3_600_000_000
    assert spring_high + 1 - spring_low == 23 * hour
    assert autumn_high + 1 - autumn_low == 25 * hour


def test_minute_precision_without_zone() -> None:
    assert date_range("2024-03-05T10:00") == (
        us(2024, 3, 5, 9, 0),
        us(2024, 3, 5, 9, 0, 59, 999999),
    )


def test_seconds_fractions_and_zones() -> None:
    assert date_range("2024-03-05T10:00:00Z") == (
        us(2024, 3, 5, 10),
        us(2024, 3, 5, 10, 0, 0, 999999),
    )
    assert date_range("2024-03-05T10:00:00.123Z") == (
        us(2024, 3, 5, 10, 0, 0, 123000),
        us(2024, 3, 5, 10, 0, 0, 123999),
    )
    assert date_range("2024-03-05T10:00:00.1234567+01:00") == (
        us(2024, 3, 5, 9, 0, 0, 123456),
        us(2024, 3, 5, 9, 0, 0, 123456),
    )
    assert date_range("2024-03-05T10:00:00-05:30")[0] == us(2024, 3, 5, 15, 30)


def test_explicit_zone_ignores_oslo_dst() -> None:
    assert date_range("2024-07-01T12:00:00+00:00")[0] == us(2024, 7, 1, 12)
    assert date_range("2024-07-01T12:00:00")[0] == us(2024, 7, 1, 10)


def test_extremes_are_clamped() -> None:
    assert date_range("0001")[0] == MIN_US
    assert date_range("9999")[1] <= MAX_US
    assert to_instant(MIN_US) == "0001-01-01T00:00:00.000000Z"
    assert to_instant(MAX_US) == "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize(
    "bad",
    ["", "20", "2024-1", "2024-13", "2024-02-30", "2024-01-01T24:00", "2024-01-01T10",
     "2024-01-01T10:00:00+15:00", "0000", "2024-01-01 10:00", "yesterday", "2024-01-01T10:00:00.Z"],
)
def test_malformed_values_raise_400(bad: str) -> None:
    with pytest.raises(FhirError) as err:
        date_range(bad)
    assert err.value.status == 400
    assert err.value.code == "value"


def test_period_range_open_ends() -> None:
    assert period_range(None, None) == (MIN_US, MAX_US)
    assert period_range("2024-01-01", None) == (date_range("2024-01-01")[0], MAX_US)
    assert period_range(None, "2024-01-01") == (MIN_US, date_range("2024-01-01")[1])
    jan, feb = date_range("2024-01"), date_range("2024-02")
    assert period_range("2024-01", "2024-02") == (jan[0], feb[1])


def test_instant_round_trip() -> None:
    now = now_us()
    text = to_instant(now)
    assert text.endswith("Z") and len(text) == len("2024-03-05T09:00:00.123456Z")
    assert date_range(text) == (now, now)


def test_now_is_close_to_system_clock() -> None:
    wall = datetime.now(UTC).timestamp() * 1_000_000
    assert abs(now_us() - wall) < 5_000_000
