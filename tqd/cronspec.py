"""Cron expressions in a time zone, and the instants they name.

Pure computation (no I/O): the configuration checks expressions with it and
the cron role asks it when to fire. Matching is cronsim's, which follows
Debian's cron; zones are the IANA database through ``zoneinfo`` (the system
copy, or the ``tzdata`` package where the host has none).

An expression has five fields (minute, hour, day of month, month, day of
week), or six with a leading seconds field, or is one of the shortcuts
``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
(``@midnight``) and ``@hourly``.

Daylight saving time, as Debian's cron handles it:

* A schedule at a specific local time (neither minute nor hour is ``*``)
  whose time does not exist on the day the clocks go forward fires once at
  the first minute that exists after it (02:30 becomes 03:00); one whose
  time occurs twice on the day they go back fires once, at the first
  occurrence.
* A schedule that fires every minute or every hour (``*`` in the minute or
  hour field), and any six-field schedule, follows real time: it fires at
  each instant whose local time matches, so an hourly schedule fires in
  both passes of a repeated hour and not in a skipped one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Most instants ``between`` lists in one call.
MAX_BETWEEN = 1000


class CronError(ValueError):
    """An expression or a time zone that cannot be used; the message says why."""


def load_zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; CronError when there is no such zone."""
    if name.upper() == "UTC":
        return UTC
    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", name):
        raise CronError(f"{name!r} is not an IANA time zone name (such as Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None


class CronSpec:
    """One cron expression in one time zone (see the module docstring)."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        """Raise CronError naming what is wrong with ``expression`` or ``timezone``."""
        self.expression = expression
        self.timezone = timezone
        self.zone = load_zone(timezone)
        text = " ".join(expression.split())
        self._expr = SHORTCUTS.get(text.lower(), text)
        if text.startswith("@") and text.lower() not in SHORTCUTS:
            raise CronError(f"unknown shortcut {text!r} (known: {', '.join(SHORTCUTS)})")
        fields = len(self._expr.split())
        if fields not in (5, 6):
            raise CronError(
                f"{expression!r}: expected five fields (minute hour day month weekday), "
                f"six with seconds first, or a shortcut such as @daily; got {fields}"
            )
        try:
            first = next(self._forward(0.0), None)
        except CronSimError as err:
            raise CronError(f"{expression!r}: {str(err).lower()}") from None
        if first is None and next(self._forward(4_000_000_000.0), None) is None:
            raise CronError(f"{expression!r}: never matches a date")

    def __repr__(self) -> str:
        return f"CronSpec({self.expression!r}, {self.timezone!r})"

    def _iter(self, ts: float, reverse: bool) -> Iterator[float]:
        # Whole seconds: cronsim drops microseconds, which in reverse would
        # count as a step of its own.
        start = datetime.fromtimestamp(int(ts // 1), self.zone)
        it = CronSim(self._expr, start, reverse=reverse)
        while True:
            try:
                yield next(it).timestamp()
            except StopIteration:  # nothing within cronsim's 50-year horizon
                return

    def _forward(self, ts: float) -> Iterator[float]:
        return self._iter(ts, reverse=False)

    def next_after(self, ts: float) -> float | None:
        """The first instant strictly after ``ts`` (None: none in 50 years)."""
        for instant in self._forward(ts):
            # A fixed local time in the second pass of a repeated hour maps
            # to its first pass, which lies behind us: it already fired.
            if instant > ts:
                return instant
        return None

    def latest_at_or_before(self, ts: float) -> float | None:
        """The last instant at or before ``ts`` (None: none in 50 years)."""
        found = None
        for instant in self._iter(ts + 1, reverse=True):
            if instant <= ts:
                found = instant
                break
        if found is None:
            return None
        # Walking back in local time can step over a first pass of a
        # repeated hour; walk forward again to catch it.
        while (following := self.next_after(found)) is not None and following <= ts:
            found = following
        return found

    def between(self, after: float, until: float, limit: int = MAX_BETWEEN) -> list[float]:
        """The instants in ``(after, until]``, oldest first, at most ``limit``."""
        out: list[float] = []
        if until <= after:
            return out
        for instant in self._forward(after):
            if instant <= after:  # a first pass behind us (see next_after)
                continue
            if instant > until or len(out) >= limit:
                break
            out.append(instant)
        return out
