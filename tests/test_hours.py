"""A station's "open now" line and its week of hours, as a user reads them, from the stored hours.

Instants are chosen in Paris time (converted to UTC, as the app passes them) unless a test is about
the daylight-saving changes, where the real UTC instant is the point. The real-data tests parse
verbatim extracts of government feeds (tests/data, see its README) with the project's feed parser.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ingest import parse, records
from prices.hours import opening_status, week
from utils import PARIS, UTC

DATA = Path(__file__).resolve().parent / "data"
EXTRACT_2016 = "extract_quotidien_2016-12-16_selected-pdv.xml"
EXTRACT_2022 = "extract_instantane_2022-05-03_selected-pdv.xml"
EXTRACT_2026 = "extract_instantane_2026-02-12_selected-pdv.xml"


def paris(*args: int) -> dt.datetime:
    """A Paris wall-clock time as the aware UTC instant the app would pass."""
    return dt.datetime(*args, tzinfo=PARIS).astimezone(UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def hours(spans: list[list[str]], closed: tuple[int, ...] = (), **by_day: list[list[str]]) -> list[dict]:
    """The stored shape: every day `spans` except the `closed` days and the ones given as day1=..., day7=..."""
    return [
        {"day": day, "closed": day in closed, "hours": [] if day in closed else by_day.get(f"day{day}", spans)}
        for day in range(1, 8)
    ]


def phrase(stored: list[dict] | None, at: dt.datetime, automat: bool = False) -> str:
    return opening_status(stored, automat, at).phrase()


SHOP = hours([["07:30", "19:00"]], closed=(7,))  # Monday to Saturday, closed on Sunday
# 2026-02-09 is a Monday; 2026-02-15 the next Sunday.


# --------------------------------------------------------------------------- open, closed, next change


def test_a_weekday_morning_says_when_the_station_closes():
    status = opening_status(SHOP, False, paris(2026, 2, 10, 9, 0))
    assert status.phrase() == "Open now, closes at 19:00"
    assert status.state == "open"
    assert status.changes_at == dt.datetime(2026, 2, 10, 19, 0, tzinfo=PARIS)
    assert status.changes_at.tzinfo is PARIS


def test_before_opening_and_after_closing_say_when_it_opens():
    assert phrase(SHOP, paris(2026, 2, 10, 6, 0)) == "Closed, opens at 07:30"
    assert phrase(SHOP, paris(2026, 2, 10, 19, 0)) == "Closed, opens tomorrow at 07:30"


def test_a_closed_sunday_sends_the_user_to_monday():
    status = opening_status(SHOP, False, paris(2026, 2, 14, 20, 0))
    assert status.phrase() == "Closed, opens Monday at 07:30"
    assert status.changes_at == dt.datetime(2026, 2, 16, 7, 30, tzinfo=PARIS)
    assert phrase(SHOP, paris(2026, 2, 15, 12, 0)) == "Closed, opens tomorrow at 07:30"


def test_a_lunch_break_closes_the_station_between_its_two_ranges():
    split = hours([["08:00", "12:00"], ["14:00", "19:00"]])
    assert phrase(split, paris(2026, 2, 10, 10, 0)) == "Open now, closes at 12:00"
    assert phrase(split, paris(2026, 2, 10, 12, 30)) == "Closed, opens at 14:00"
    assert phrase(split, paris(2026, 2, 10, 14, 0)) == "Open now, closes at 19:00"


def test_a_range_past_midnight_stays_open_into_the_next_day_even_a_closed_one():
    night = hours([["22:00", "06:00"]], closed=(7,))
    assert phrase(night, paris(2026, 2, 10, 23, 0)) == "Open now, closes tomorrow at 06:00"
    assert phrase(night, paris(2026, 2, 11, 3, 0)) == "Open now, closes at 06:00"
    assert phrase(night, paris(2026, 2, 11, 12, 0)) == "Closed, opens at 22:00"
    assert phrase(night, paris(2026, 2, 15, 5, 0)) == "Open now, closes at 06:00"  # Saturday night's range
    assert phrase(night, paris(2026, 2, 15, 7, 0)) == "Closed, opens tomorrow at 22:00"


def test_a_range_ending_at_midnight_closes_at_midnight():
    late = hours([["09:12", "00:00"]])
    assert phrase(late, paris(2026, 2, 10, 23, 0)) == "Open now, closes at midnight"
    assert phrase(hours([["18:00", "24:00"]]), paris(2026, 2, 10, 23, 0)) == "Open now, closes at midnight"


def test_ranges_that_meet_at_midnight_read_as_one_opening():
    evenings = hours([["06:00", "12:00"], ["20:00", "24:00"]], day3=[["00:00", "02:00"], ["06:00", "12:00"]])
    assert phrase(evenings, paris(2026, 2, 10, 21, 0)) == "Open now, closes tomorrow at 02:00"


@pytest.mark.parametrize("span", [["00:00", "00:00"], ["00:00", "24:00"], ["00:00", "23:59"]])
def test_a_station_open_all_day_every_day_is_open_24_hours(span):
    status = opening_status(hours([span]), True, paris(2026, 2, 10, 3, 0))
    assert status.phrase() == "Open 24 hours"
    assert (status.state, status.changes_at, status.round_the_clock) == ("open", None, True)
    assert [day.text for day in week(hours([span]), dt.date(2026, 2, 10))] == ["24 hours"] * 7


def test_all_day_on_saturday_then_closed_on_sunday_closes_at_midnight():
    weekend = hours([["00:00", "00:00"]], closed=(7,))
    status = opening_status(weekend, False, paris(2026, 2, 14, 20, 0))
    assert status.phrase() == "Open now, closes at midnight"
    assert not status.round_the_clock


# --------------------------------------------------------------------------- never "open" on doubtful data


@pytest.mark.parametrize(
    "stored",
    [None, [], hours([]), hours([["01:00", "01:00"]]), hours([["12:20", "12:20"]])],
    ids=["no hours", "empty list", "days without ranges", "01:00-01:00", "12:20-12:20"],
)
def test_unknown_hours_are_never_reported_open(stored):
    status = opening_status(stored, False, paris(2026, 2, 10, 10, 0))
    assert status.phrase() == "Hours unknown"
    assert (status.state, status.changes_at) == ("unknown", None)


@pytest.mark.parametrize("bad", ["", "9h", "25:00", "12:60", "24:00", "07.30"])
def test_a_malformed_time_voids_its_range_and_leaves_the_day_unknown(bad):
    assert phrase(hours([[bad, "19:00"]]), paris(2026, 2, 10, 10, 0)) == "Hours unknown"
    assert phrase(hours([["07:00", "12:00"], [bad, "19:00"]]), paris(2026, 2, 10, 10, 0)) == "Open now, closes at 12:00"


def test_a_day_missing_from_the_list_is_unknown_and_no_opening_is_promised_past_it():
    no_sunday = [day for day in hours([["07:00", "19:00"]]) if day["day"] != 7]
    assert phrase(no_sunday, paris(2026, 2, 15, 10, 0)) == "Hours unknown"
    status = opening_status(no_sunday, False, paris(2026, 2, 14, 20, 0))
    assert status.phrase() == "Closed"
    assert status.changes_at is None
    assert phrase(no_sunday, paris(2026, 2, 14, 10, 0)) == "Open now, closes at 19:00"


def test_a_day_marked_closed_is_closed_whatever_ranges_it_lists():
    automat_only = [{"day": day, "closed": True, "hours": [["01:00", "01:00"]]} for day in range(1, 8)]
    status = opening_status(automat_only, False, paris(2026, 2, 10, 10, 0))
    assert status.phrase() == "Closed"
    assert (status.state, status.changes_at) == ("closed", None)


def test_the_24_24_automat_is_named_but_never_makes_the_station_open():
    at_night = paris(2026, 2, 10, 23, 0)
    status = opening_status(SHOP, True, at_night)
    assert status.state == "closed"
    assert status.automat
    assert status.phrase() == "Closed, opens tomorrow at 07:30 (24/24 automat)"
    assert phrase(None, at_night, automat=True) == "Hours unknown (24/24 automat)"
    assert phrase(SHOP, paris(2026, 2, 10, 10, 0), automat=True) == "Open now, closes at 19:00"


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        opening_status(SHOP, False, dt.datetime(2026, 2, 10, 10, 0))


# --------------------------------------------------------------------------- daylight-saving changes
# 2026: clocks spring forward on Sunday 29 March (02:00 CET -> 03:00 CEST, at 01:00 UTC)
# and fall back on Sunday 25 October (03:00 CEST -> 02:00 CET, at 01:00 UTC).

NIGHT_SUNDAY = hours([], closed=(1, 2, 3, 4, 5, 6), day7=[["00:00", "06:00"]])


def test_spring_forward_night_opening_closes_at_six_on_the_new_clock():
    status = opening_status(NIGHT_SUNDAY, False, utc(2026, 3, 29, 1, 30))  # 03:30 CEST
    assert status.phrase() == "Open now, closes at 06:00"
    assert status.changes_at == utc(2026, 3, 29, 4, 0)
    assert phrase(NIGHT_SUNDAY, utc(2026, 3, 28, 22, 59)) == "Closed, opens at midnight"  # 23:59 CET Saturday
    assert phrase(NIGHT_SUNDAY, utc(2026, 3, 29, 4, 0)) == "Closed, opens next Sunday at 00:00"


def test_spring_forward_a_time_in_the_skipped_hour_happens_when_the_clock_jumps():
    closing = hours([], closed=(1, 2, 3, 4, 5, 6), day7=[["00:00", "02:30"]])
    status = opening_status(closing, False, utc(2026, 3, 29, 0, 30))  # 01:30 CET
    assert status.phrase() == "Open now, closes at 03:00"
    assert status.changes_at == utc(2026, 3, 29, 1, 0)
    assert opening_status(closing, False, utc(2026, 3, 29, 1, 0)).state == "closed"
    opening = hours([], closed=(1, 2, 3, 4, 5, 6), day7=[["02:30", "20:00"]])
    status = opening_status(opening, False, utc(2026, 3, 29, 0, 30))
    assert status.phrase() == "Closed, opens at 03:00"
    assert status.changes_at == utc(2026, 3, 29, 1, 0)


def test_fall_back_night_opening_lasts_through_the_repeated_hour():
    for instant in (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)):  # 02:30 CEST, then 02:30 CET
        status = opening_status(NIGHT_SUNDAY, False, instant)
        assert status.phrase() == "Open now, closes at 06:00"
        assert status.changes_at == utc(2026, 10, 25, 5, 0)


def test_fall_back_a_repeated_time_means_its_first_occurrence():
    closing = hours([], closed=(1, 2, 3, 4, 5, 6), day7=[["00:00", "02:30"]])
    status = opening_status(closing, False, utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert status.phrase() == "Open now, closes at 02:30"
    # A time in the repeated hour never compares equal across zones (PEP 495): compare in UTC.
    assert status.changes_at.astimezone(UTC) == utc(2026, 10, 25, 0, 30)
    assert opening_status(closing, False, utc(2026, 10, 25, 1, 15)).state == "closed"  # 02:15 CET, after closing


# --------------------------------------------------------------------------- the week


def test_the_week_lists_each_day_with_today_highlighted():
    stored = hours([["08:00", "12:00"], ["14:00", "19:00"]], closed=(7,), day6=[["07:00", "19:00"]])
    stored[2] = {"day": 3, "closed": False, "hours": []}
    days = week(stored, dt.date(2026, 2, 14))
    assert [(d.name, d.text) for d in days] == [
        ("Monday", "08:00–12:00, 14:00–19:00"),
        ("Tuesday", "08:00–12:00, 14:00–19:00"),
        ("Wednesday", "Unknown"),
        ("Thursday", "08:00–12:00, 14:00–19:00"),
        ("Friday", "08:00–12:00, 14:00–19:00"),
        ("Saturday", "07:00–19:00"),
        ("Sunday", "Closed"),
    ]
    assert [d.name for d in days if d.today] == ["Saturday"]


def test_the_week_shows_night_ranges_as_written_and_unknown_without_hours():
    assert week(hours([["22:00", "06:00"]]), dt.date(2026, 2, 9))[0].text == "22:00–06:00"
    assert [d.text for d in week(None, dt.date(2026, 2, 9))] == ["Unknown"] * 7


# --------------------------------------------------------------------------- real feed extracts


def stations(name: str) -> dict[int, tuple[list[dict] | None, bool]]:
    """Each station's stored hours and automat flag, as the ETL parses and stores them."""
    with (DATA / name).open("rb") as stream:
        entries = list(parse.parse_feed(stream, records.ParseReport()))
    return {
        e.station["id"]: (records.opening_hours_document(e.station["opening_hours"]), e.station["automate_24_24"])
        for e in entries
    }


@pytest.fixture(scope="module")
def feed_2026():
    return stations(EXTRACT_2026)


@pytest.fixture(scope="module")
def feed_2016():
    return stations(EXTRACT_2016)


def real_phrase(station: tuple[list[dict] | None, bool], at: dt.datetime) -> str:
    return opening_status(*station, at).phrase()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (paris(2026, 2, 12, 9, 0), "Open now, closes at 21:00"),  # Thursday
        (paris(2026, 2, 14, 6, 30), "Closed, opens at 07:00"),  # Saturday opens later
        (paris(2026, 2, 15, 20, 30), "Closed, opens tomorrow at 06:00"),  # Sunday closes at 20:00
        (paris(2026, 2, 13, 0, 30), "Closed, opens at 06:00"),  # past midnight
    ],
)
def test_real_2026_station_92330002_one_range_a_day(feed_2026, at, expected):
    assert real_phrase(feed_2026[92330002], at) == expected


def test_real_2026_station_92330002_across_both_clock_changes(feed_2026):
    spring = opening_status(*feed_2026[92330002], paris(2026, 3, 28, 22, 0))
    assert spring.phrase() == "Closed, opens tomorrow at 08:00"
    assert spring.changes_at == utc(2026, 3, 29, 6, 0)  # 08:00 CEST
    autumn = opening_status(*feed_2026[92330002], paris(2026, 10, 24, 22, 0))
    assert autumn.phrase() == "Closed, opens tomorrow at 08:00"
    assert autumn.changes_at == utc(2026, 10, 25, 7, 0)  # 08:00 CET


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (paris(2026, 2, 12, 10, 0), "Open now, closes at 12:00"),
        (paris(2026, 2, 12, 12, 30), "Closed, opens at 14:00 (24/24 automat)"),  # lunch break
        (paris(2026, 2, 15, 13, 0), "Closed, opens at 16:00 (24/24 automat)"),  # Sunday's longer break
        (paris(2026, 2, 15, 23, 30), "Closed, opens tomorrow at 08:00 (24/24 automat)"),
    ],
)
def test_real_2026_station_4170002_two_ranges_a_day(feed_2026, at, expected):
    assert real_phrase(feed_2026[4170002], at) == expected


def test_real_2026_station_4170002_week(feed_2026):
    days = week(feed_2026[4170002][0], dt.date(2026, 2, 15))
    assert days[0].text == "08:00–12:00, 14:00–19:00"
    assert (days[6].text, days[6].today) == ("09:00–12:00, 16:00–19:00", True)


def test_real_2026_automat_only_station_is_closed_and_says_automat(feed_2026):
    assert real_phrase(feed_2026[38230003], paris(2026, 2, 12, 10, 0)) == "Closed (24/24 automat)"
    assert [d.text for d in week(feed_2026[38230003][0], dt.date(2026, 2, 12))] == ["Closed"] * 7


def test_real_2026_closed_sunday_points_to_monday(feed_2026):
    corsica = feed_2026[20137007]  # 07.00-19.30, ferme="1" on Sunday
    assert real_phrase(corsica, paris(2026, 2, 15, 10, 0)) == "Closed, opens tomorrow at 07:00 (24/24 automat)"
    assert real_phrase(corsica, paris(2026, 2, 14, 20, 0)) == "Closed, opens Monday at 07:00 (24/24 automat)"


@pytest.mark.parametrize(
    ("station", "expected"),
    [
        (44000009, "Hours unknown"),  # no <horaires>
        (89100001, "Hours unknown"),  # seven <jour> without any <horaire>
        (5560001, "Hours unknown (24/24 automat)"),
    ],
)
def test_real_2026_stations_without_hours_are_unknown(feed_2026, station, expected):
    assert real_phrase(feed_2026[station], paris(2026, 2, 12, 10, 0)) == expected


def test_real_2022_motorway_station_open_round_the_clock():
    station = stations(EXTRACT_2022)[64170012]  # 00.00-23.59 every day
    assert real_phrase(station, paris(2022, 5, 3, 3, 0)) == "Open 24 hours"


def test_real_2016_placeholder_hours_are_unknown(feed_2016):
    station = feed_2016[51120002]  # <ouverture debut="01:00:00" fin="01:00:00" saufjour=""/>
    assert real_phrase(station, paris(2016, 12, 16, 10, 0)) == "Hours unknown"
    assert [d.text for d in week(station[0], dt.date(2016, 12, 16))] == ["Unknown"] * 7


def test_real_2016_ouverture_hours(feed_2016):
    daily = feed_2016[1000005]  # 06:00:23-22:00:23 every day
    assert real_phrase(daily, paris(2016, 12, 16, 10, 0)) == "Open now, closes at 22:00"
    assert real_phrase(daily, paris(2016, 12, 16, 23, 0)) == "Closed, opens tomorrow at 06:00"
    assert real_phrase(feed_2016[13015012], paris(2016, 12, 18, 3, 0)) == "Open 24 hours"  # 00:00:42-23:59:42
    assert real_phrase(feed_2016[17690001], paris(2016, 12, 16, 10, 0)) == "Closed"  # saufjour lists every day


def test_real_2016_sunday_closed_station_with_placeholder_weekdays(feed_2016):
    station = feed_2016[13130005]  # 01:00:00-01:00:00 saufjour="Dimanche"
    assert real_phrase(station, paris(2016, 12, 18, 10, 0)) == "Closed"
    assert real_phrase(station, paris(2016, 12, 16, 10, 0)) == "Hours unknown"
    assert [d.text for d in week(station[0], dt.date(2016, 12, 18))][-2:] == ["Unknown", "Closed"]
