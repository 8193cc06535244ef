"""When a connection can come: availability windows such as `Mon-Fri 08:00-12:00; Sat 09:00-11:00`,
parsed and checked against a slot, pure (no I/O).

A window is a set of weekdays and a wall-clock span in the location's time zone; a slot fits
only when one window holds the WHOLE slot (start and end on the same local day, inside the
span). The check converts the slot's aware instants to the location's wall time, so a window
means the same hours on both sides of a DST change. No windows (`any`, empty) = any time.

Example:
    >>> import datetime as dt
    >>> windows = parse_windows("Mon-Fri 08:00-12:00; Sat 09:00-11:00")
    >>> format_windows(windows)
    'Mon-Fri 08:00-12:00; Sat 09:00-11:00'
    >>> start = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)  # Wed 10:00 in New York
    >>> slot_fits(windows, start, 30, "America/New_York")
    True
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ANY = "any"
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


class AvailabilityError(ValueError):
    """A malformed window; `part` is the piece that is wrong (the patient's own text, not PHI)."""

    def __init__(self, part: str, rule: str) -> None:
        self.part = part
        self.rule = rule
        super().__init__(f"availability: {rule} `{part}`")


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays (0 = Monday) and a [start, end) span in minutes after local midnight."""

    days: frozenset[int]
    start: int
    end: int  # up to 1440 (24:00)

    def holds(self, local_start: dt.datetime, local_end: dt.datetime) -> bool:
        if local_start.weekday() not in self.days:
            return False
        begin = local_start.hour * 60 + local_start.minute + local_start.second / 60
        if local_end.date() == local_start.date():
            finish = local_end.hour * 60 + local_end.minute + local_end.second / 60
        elif local_end == dt.datetime.combine(
            local_start.date() + dt.timedelta(days=1), dt.time(), tzinfo=local_end.tzinfo
        ):
            finish = 1440.0  # ends exactly at midnight
        else:
            return False  # runs into the next day
        return self.start <= begin and finish <= self.end and begin < self.end


def _day(text: str) -> int:
    for index, name in enumerate(DAYS):
        if text.lower() == name.lower():
            return index
    raise AvailabilityError(text, "unknown day")


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise AvailabilityError(text, "empty day in")
        if "-" in item:
            first, _, last = item.partition("-")
            a, b = _day(first.strip()), _day(last.strip())
            span = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
            days.update(span)
        else:
            days.add(_day(item))
    return frozenset(days)


def _minutes(text: str) -> int:
    found = _TIME.match(text.strip())
    if not found:
        raise AvailabilityError(text.strip(), "expected HH:MM, got")
    hour, minute = int(found.group(1)), int(found.group(2))
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise AvailabilityError(text.strip(), "no such time")
    return hour * 60 + minute


def parse_windows(text: str | None) -> tuple[Window, ...]:
    """Windows from `DAYS HH:MM-HH:MM; ...` (DAYS: `Mon`, `Mon-Fri`, `Mon,Wed,Fri`; English
    three-letter names, any case). `any`, an empty text or None: no windows (any time).

    >>> parse_windows("Mon-Fry 08:00-12:00")
    Traceback (most recent call last):
    ...
    openslots.domain.availability.AvailabilityError: availability: unknown day `Fry`
    """
    if text is None or text.strip().lower() in ("", ANY):
        return ()
    windows = []
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue  # a trailing `;`
        days_text, _, span = entry.rpartition(" ")
        if not days_text.strip():
            raise AvailabilityError(entry, "expected `DAYS HH:MM-HH:MM`, got")
        if span.count("-") != 1:
            raise AvailabilityError(span, "expected a span HH:MM-HH:MM, got")
        start_text, end_text = span.split("-")
        start, end = _minutes(start_text), _minutes(end_text)
        if end <= start:
            raise AvailabilityError(span, "the end must be after the start in")
        windows.append(Window(_days(days_text.strip()), start, end))
    return tuple(windows)


def _format_days(days: frozenset[int]) -> str:
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAYS[run[0]] if len(run) == 1 else f"{DAYS[run[0]]}-{DAYS[run[-1]]}" for run in runs
    )


def format_windows(windows: tuple[Window, ...]) -> str | None:
    """The canonical text stored in connections.availability; None for no windows."""
    if not windows:
        return None

    def hhmm(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return "; ".join(f"{_format_days(w.days)} {hhmm(w.start)}-{hhmm(w.end)}" for w in windows)


def normalise_windows(text: str | None) -> str | None:
    """Parse and return the canonical text (None = any time); AvailabilityError when malformed."""
    return format_windows(parse_windows(text))


def slot_fits(
    windows: tuple[Window, ...],
    start: dt.datetime,
    duration_minutes: int | None,
    timezone: str,
) -> bool:
    """True when no windows are set, or one window holds the whole slot in `timezone`'s wall
    time (a slot without a length is the instant it starts)."""
    if not windows:
        return True
    zone = ZoneInfo(timezone)
    end = start + dt.timedelta(minutes=duration_minutes or 0)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    return any(window.holds(local_start, local_end) for window in windows)


def text_fits(
    text: str | None, start: dt.datetime, duration_minutes: int | None, timezone: str
) -> bool:
    """`slot_fits` over stored text; a stored text that no longer parses holds no slot (the
    column is written only through `normalise_windows`, so that is a corrupted row)."""
    try:
        windows = parse_windows(text)
    except AvailabilityError:
        return False
    return slot_fits(windows, start, duration_minutes, timezone)
