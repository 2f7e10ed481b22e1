"""Trading-session partitions against the NYSE calendar as published (no library in the loop)."""

import datetime as dt

import pandas as pd

from stock_assets.calendar import session_offset
from stock_assets.partitions import closed_sessions, trading_sessions_partitions

trading_sessions = trading_sessions_partitions("2012-01-03")

# NYSE full-day closures in 2024, from the exchange's published holiday list.
NYSE_2024_HOLIDAYS = {
    "2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27",
    "2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25",
}


def test_partitions_of_2024_are_exactly_the_nyse_sessions():
    weekdays = {d.strftime("%Y-%m-%d") for d in pd.bdate_range("2024-01-01", "2024-12-31")}
    expected = sorted(weekdays - NYSE_2024_HOLIDAYS)
    keys = [k for k in trading_sessions.get_partition_keys() if k.startswith("2024-")]
    assert keys == expected
    assert len(keys) == 252


def test_unscheduled_closures_are_not_sessions():
    partitions = trading_sessions_partitions("2012-01-03")
    keys = set(partitions.get_partition_keys())
    assert {"2012-10-29", "2012-10-30", "2018-12-05", "2025-01-09"}.isdisjoint(keys)
    assert {"2012-10-26", "2012-10-31", "2018-12-04", "2025-01-08"} <= keys


def test_a_friday_window_ends_at_the_next_session():
    window = trading_sessions.time_window_for_partition_key("2024-07-05")
    assert (window.start.date(), window.end.date()) == (dt.date(2024, 7, 5), dt.date(2024, 7, 8))


def test_closed_sessions_skip_a_session_still_trading():
    during_session = pd.Timestamp("2024-07-08 15:00", tz="America/New_York")
    assert closed_sessions("2015-01-02", 3, now=during_session) == ["2024-07-02", "2024-07-03", "2024-07-05"]
    after_close = pd.Timestamp("2024-07-08 16:01", tz="America/New_York")
    assert closed_sessions("2015-01-02", 1, now=after_close) == ["2024-07-08"]


def test_session_offset_counts_sessions_not_days():
    assert session_offset(dt.date(2024, 7, 5), -2) == dt.date(2024, 7, 2)
    assert session_offset(dt.date(2012, 1, 5), -300, floor="2012-01-03") == dt.date(2012, 1, 3)  # clamped to the first partition
