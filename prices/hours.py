"""Whether a station is open at a given instant, and its week of hours, from the opening hours the ETL stores.

Stored hours are Paris wall-clock times, one entry a day (1 = Monday ... 7 = Sunday), or None when the
feed gave none: ``[{"day": 1, "closed": false, "hours": [["07:30", "21:30"]]}, ...]`` (ingest/records.py).
The feed's hours are often missing or placeholders, so every doubtful case reads "unknown", never "open":

- no hours, a day absent from the list, or a day neither closed nor with a usable span: unknown that day;
- "closed": true wins over any span listed with it (the feed writes 01:00-01:00 on most closed days);
- "00:00"-"00:00" means open all day; "24:00" and "23:59" as a closing time mean midnight;
- other equal times are placeholders, not 24 hours, and the span is ignored: "01:00"-"01:00" fills 62% of
  the 2016 stations, and most of those that later published hours published ordinary ones;
- a closing time at or before the opening time runs past midnight into the next day;
- a malformed time ("", "9h", "25:00") voids its span.

automate_24_24 says the card pumps work round the clock, not that the station is staffed: the state comes
from the hours alone, and the phrase names the automat when the station is not open.

Times are compared as real instants (UTC). A time skipped by the spring-forward change counts from the end
of the gap (02:30 is 03:00, when the clock first reads 02:30 or later); a time repeated by the fall-back
change is its first occurrence.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from i18n import N_, _, day_name, weekday_in_sentence
from utils import PARIS, UTC

PHRASES = {
    "open": N_("Open now, closes {when}"),
    "round_the_clock": N_("Open 24 hours"),
    "closed": N_("Closed"),
    "closed_until": N_("Closed, opens {when}"),
    "unknown": N_("Hours unknown"),
    "with_automat": N_("{} (24/24 automat)"),
    "today": N_("at {time}"),
    "tomorrow": N_("tomorrow at {time}"),
    "midnight": N_("at midnight"),
    "weekday": N_("{day} at {time}"),
    "next_weekday": N_("next {day} at {time}"),
    "day_closed": N_("Closed"),
    "day_round_the_clock": N_("24 hours"),
    "day_unknown": N_("Unknown"),
}
DAY_MINUTES = 24 * 60
WEEK = timedelta(days=7)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")

State = Literal["open", "closed", "unknown"]
Span = tuple[int, int]  # minutes after the day's midnight; the end passes 24:00 when the span runs overnight


def _phrase(key: str) -> str:
    return _(PHRASES[key])


@dataclass(frozen=True)
class OpeningStatus:
    state: State
    changes_at: datetime | None  # Paris time: closing if open, next opening if closed; None if not foreseeable
    round_the_clock: bool  # open 24 hours a day all week
    automat: bool  # the card pumps work 24/24, whatever the state
    at: datetime  # the instant asked about, Paris time

    def phrase(self) -> str:
        """The status in the active language: "Open now, closes at 19:00", "Closed, opens Monday at 07:00"..."""
        if self.state == "open":
            text = _phrase("round_the_clock") if self.round_the_clock else _phrase("open").format(when=self._when())
        elif self.state == "closed":
            text = _phrase("closed_until").format(when=self._when()) if self.changes_at else _phrase("closed")
        else:
            text = _phrase("unknown")
        return _phrase("with_automat").format(text) if self.automat and self.state != "open" else text

    def _when(self) -> str:
        clock = self.changes_at.strftime("%H:%M")
        days_ahead = (self.changes_at.date() - self.at.date()).days
        if days_ahead == 0:
            return _phrase("today").format(time=clock)
        if days_ahead == 1:
            return _phrase("midnight") if clock == "00:00" else _phrase("tomorrow").format(time=clock)
        weekday = _phrase("weekday") if days_ahead < 7 else _phrase("next_weekday")  # not today's weekday
        return weekday.format(day=weekday_in_sentence(self.changes_at.weekday()), time=clock)


@dataclass(frozen=True)
class DayHours:
    day: int  # 1 = Monday ... 7 = Sunday
    name: str
    text: str  # "07:00–19:00", "08:00–12:00, 14:00–19:00", "Closed", "24 hours" or "Unknown"
    today: bool


def opening_status(hours: list[dict] | None, automate_24_24: bool, at: datetime) -> OpeningStatus:
    """Open, closed or unknown at the aware instant `at`, and when that changes."""
    if at.tzinfo is None:
        raise ValueError("opening_status needs a timezone-aware instant")
    now, known = at.astimezone(UTC), _known_days(hours)
    paris_now = now.astimezone(PARIS)
    days = [paris_now.date() + timedelta(days=n) for n in range(-1, 8)]  # yesterday's spans may run into today
    opens = _merged(
        (_instant(d, start), _instant(d, end)) for d in days for start, end in known.get(d.isoweekday(), ())
    )
    unknown_starts = [_instant(d, 0) for d in days if d.isoweekday() not in known]

    def status(state: State, changes_at: datetime | None = None, round_the_clock: bool = False) -> OpeningStatus:
        changes_at = changes_at.astimezone(PARIS) if changes_at else None
        return OpeningStatus(state, changes_at, round_the_clock, automate_24_24, paris_now)

    closes = next((end for start, end in opens if start <= now < end), None)
    if closes is not None:
        return status("open", None, True) if closes >= now + WEEK else status("open", closes)
    if any(start <= now < start + timedelta(days=1) for start in unknown_starts):
        return status("unknown")
    next_open = next((start for start, _ in opens if start > now), None)
    next_unknown = next((start for start in unknown_starts if start > now), None)
    if next_open and next_unknown and next_unknown < next_open:
        next_open = None  # a day of unknown hours comes first: no promise of an opening time
    return status("closed", next_open)


def week(hours: list[dict] | None, today: date) -> list[DayHours]:
    """Monday to Sunday with each day's hours as display text, `today` (a Paris date) flagged."""
    known = _known_days(hours)
    return [
        DayHours(day, day_name(day - 1), _day_text(known.get(day)), day == today.isoweekday()) for day in range(1, 8)
    ]


def any_day_known(hours: list[dict] | None) -> bool:
    """Whether the hours say anything of any day: without, a week of 'Unknown' lines says nothing."""
    return bool(_known_days(hours))


def _day_text(spans: tuple[Span, ...] | None) -> str:
    if spans is None:
        return _phrase("day_unknown")
    if not spans:
        return _phrase("day_closed")
    if (0, DAY_MINUTES) in spans:
        return _phrase("day_round_the_clock")
    return ", ".join(f"{_clock(start)}–{_clock(end)}" for start, end in spans)


def _clock(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _known_days(hours: list[dict] | None) -> dict[int, tuple[Span, ...]]:
    """The usable spans of each day whose hours are known, none for a closed day; unknown days are left out."""
    known = {}
    for entry in hours or ():
        day = entry.get("day")
        spans = tuple(sorted(filter(None, (_span(opens, closes) for opens, closes in entry.get("hours") or ()))))
        if day in range(1, 8) and (entry.get("closed") or spans):
            known[day] = () if entry.get("closed") else spans
    return known


def _span(opens: str, closes: str) -> Span | None:
    start, end = _minutes(opens), _minutes(closes)
    if start is None or end is None or start == DAY_MINUTES:
        return None
    if start == end:
        return (0, DAY_MINUTES) if start == 0 else None
    if end == DAY_MINUTES - 1:
        end = DAY_MINUTES  # "23:59" is how the feed writes midnight
    return (start, end if end > start else end + DAY_MINUTES)


def _minutes(text: str | None) -> int | None:
    """Minutes after midnight of "HH:MM", up to "24:00"; None when malformed."""
    match = _CLOCK.fullmatch(text or "")
    if not match:
        return None
    hour, minute = int(match[1]), int(match[2])
    return hour * 60 + minute if minute < 60 and (hour < 24 or (hour, minute) == (24, 0)) else None


@functools.lru_cache(maxsize=8192)  # a list of results asks for the same few days and times again and again
def _instant(day: date, minutes: int) -> datetime:
    """The UTC instant when Paris clocks first read `minutes` after midnight of `day`, or later."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)
    while (aware := wall.replace(tzinfo=PARIS)).astimezone(UTC).astimezone(PARIS).replace(tzinfo=None) != wall:
        wall += timedelta(minutes=1)  # inside the spring-forward gap: walk to its end
    return aware.astimezone(UTC)


def _merged(intervals) -> list[tuple[datetime, datetime]]:
    """Sorted, non-empty intervals, with the ones that overlap or touch joined (22:00-24:00 then 00:00-06:00)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
