"""Cron expressions in a time zone: table-driven cases for the instants they
name, shortcuts, six fields, errors and daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tqd.cronspec import SHORTCUTS, CronError, CronSpec

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(y, mo, d, h=0, mi=0, s=0, tz=UTC, fold=0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold).timestamp()


def local(instant: float, tz) -> str:
    return datetime.fromtimestamp(instant, tz).isoformat()


# (expression, zone, start, expected next instants as local ISO strings)
NEXT_CASES = [
    ("every minute", "* * * * *", "UTC", ts(2027, 1, 1, 12, 0, 30),
     ["2027-01-01T12:01:00+00:00", "2027-01-01T12:02:00+00:00"]),
    ("strictly after an exact match", "0 12 * * *", "UTC", ts(2027, 1, 1, 12),
     ["2027-01-02T12:00:00+00:00"]),
    ("@hourly", "@hourly", "UTC", ts(2027, 1, 1, 12, 5),
     ["2027-01-01T13:00:00+00:00", "2027-01-01T14:00:00+00:00"]),
    ("@daily in a zone", "@daily", "Europe/Berlin", ts(2027, 1, 1, 12),
     ["2027-01-02T00:00:00+01:00", "2027-01-03T00:00:00+01:00"]),
    ("@weekly is Sunday midnight", "@weekly", "UTC", ts(2027, 1, 1),  # a Friday
     ["2027-01-03T00:00:00+00:00", "2027-01-10T00:00:00+00:00"]),
    ("@monthly", "@monthly", "UTC", ts(2027, 1, 15), ["2027-02-01T00:00:00+00:00"]),
    ("@yearly", "@yearly", "UTC", ts(2027, 1, 15), ["2028-01-01T00:00:00+00:00"]),
    ("six fields: seconds first", "*/20 * * * * *", "UTC", ts(2027, 1, 1, 0, 0, 5),
     ["2027-01-01T00:00:20+00:00", "2027-01-01T00:00:40+00:00", "2027-01-01T00:01:00+00:00"]),
    ("weekday names and ranges", "30 9 * * MON-FRI", "UTC", ts(2027, 1, 1, 10),  # Friday 10:00
     ["2027-01-04T09:30:00+00:00", "2027-01-05T09:30:00+00:00"]),
    # Spring forward in New York: 02:00 -> 03:00 on 2027-03-14.
    ("a skipped local time fires once at the first minute that exists", "30 2 * * *",
     "America/New_York", ts(2027, 3, 13, 12, tz=NY),
     ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"]),
    ("hourly skips the missing hour", "0 * * * *", "America/New_York",
     ts(2027, 3, 14, 0, 30, tz=NY),
     ["2027-03-14T01:00:00-05:00", "2027-03-14T03:00:00-04:00", "2027-03-14T04:00:00-04:00"]),
    # Fall back in New York: 02:00 -> 01:00 on 2027-11-07.
    ("a repeated local time fires once, at its first pass", "30 1 * * *", "America/New_York",
     ts(2027, 11, 6, 12, tz=NY), ["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"]),
    ("from inside the second pass, the repeated time already fired", "30 1 * * *",
     "America/New_York", ts(2027, 11, 7, 1, 20, tz=NY, fold=1), ["2027-11-08T01:30:00-05:00"]),
    ("hourly fires in both passes of the repeated hour", "0 * * * *", "America/New_York",
     ts(2027, 11, 7, 0, 30, tz=NY),
     ["2027-11-07T01:00:00-04:00", "2027-11-07T01:00:00-05:00", "2027-11-07T02:00:00-05:00"]),
    ("Berlin spring forward", "15 2 * * *", "Europe/Berlin", ts(2027, 3, 27, 12, tz=BERLIN),
     ["2027-03-28T03:00:00+02:00", "2027-03-29T02:15:00+02:00"]),
]


@pytest.mark.parametrize(("expr", "zone", "start", "want"), [c[1:] for c in NEXT_CASES],
                         ids=[c[0] for c in NEXT_CASES])
def test_next_instants(expr, zone, start, want):
    spec = CronSpec(expr, zone)
    got, at = [], start
    for _ in want:
        at = spec.next_after(at)
        got.append(local(at, spec.zone))
    assert got == want
    # between() lists the same instants
    assert [local(i, spec.zone) for i in spec.between(start, at)] == want


LATEST_CASES = [
    ("exact match counts", "0 12 * * *", "UTC", ts(2027, 1, 1, 12), "2027-01-01T12:00:00+00:00"),
    ("the one before", "0 12 * * *", "UTC", ts(2027, 1, 1, 11, 59), "2026-12-31T12:00:00+00:00"),
    ("monthly, weeks back", "@monthly", "UTC", ts(2027, 1, 20), "2027-01-01T00:00:00+00:00"),
    ("in the second pass of a repeated hour, its first pass", "30 1 * * *", "America/New_York",
     ts(2027, 11, 7, 1, 20, tz=NY, fold=1), "2027-11-07T01:30:00-04:00"),
    ("on a spring-forward day, the shifted firing", "30 2 * * *", "America/New_York",
     ts(2027, 3, 14, 4, tz=NY), "2027-03-14T03:00:00-04:00"),
]


@pytest.mark.parametrize(("expr", "zone", "at", "want"), [c[1:] for c in LATEST_CASES],
                         ids=[c[0] for c in LATEST_CASES])
def test_latest_at_or_before(expr, zone, at, want):
    spec = CronSpec(expr, zone)
    assert local(spec.latest_at_or_before(at), spec.zone) == want


def test_between_is_half_open_and_bounded():
    spec = CronSpec("* * * * * *")
    assert spec.between(10.0, 13.0) == [11.0, 12.0, 13.0]
    assert spec.between(10.5, 12.5) == [11.0, 12.0]
    assert spec.between(13.0, 10.0) == []
    assert spec.between(0.0, 1e6, limit=5) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_every_shortcut_parses():
    for shortcut in SHORTCUTS:
        assert CronSpec(shortcut).next_after(0.0) is not None
    assert CronSpec("@DAILY").next_after(0.0) == 86400.0


@pytest.mark.parametrize(("expr", "zone", "message"), [
    ("* * *", "UTC", "expected five fields"),
    ("* * * * * * *", "UTC", "got 7"),
    ("61 * * * *", "UTC", "bad minute"),
    ("* 24 * * *", "UTC", "bad hour"),
    ("0 0 31 2 *", "UTC", "bad day-of-month"),
    ("@often", "UTC", "unknown shortcut"),
    ("", "UTC", "got 0"),
    ("* * * * *", "Mars/Olympus", "unknown time zone"),
    ("* * * * *", "../../etc/passwd", "not an IANA time zone name"),
    ("* * * * *", "", "not an IANA time zone name"),
])
def test_errors_name_what_is_wrong(expr, zone, message):
    with pytest.raises(CronError, match=message):
        CronSpec(expr, zone)
