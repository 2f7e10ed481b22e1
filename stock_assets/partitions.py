"""Trading-session partitions: NYSE sessions (exchange_calendars XNYS), keyed YYYY-MM-DD."""

import datetime as dt
from functools import lru_cache

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

from stock_assets.settings import Settings

NY = "America/New_York"


@lru_cache
def nyse_calendar(start: str) -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start=start)


def nyse_holidays(start: str) -> list[dt.datetime]:
    """Weekdays on which NYSE holds no session (holidays and unscheduled closures)."""
    cal = nyse_calendar(start)
    weekdays = pd.bdate_range(cal.first_session, cal.last_session)
    return [d.to_pydatetime() for d in weekdays.difference(cal.sessions)]


def sessions_between(start: str, first: str | dt.date, last: str | dt.date) -> list[dt.date]:
    cal = nyse_calendar(start)
    return [d.date() for d in cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))]


def closed_sessions(start: str, count: int, now: pd.Timestamp | None = None) -> list[str]:
    """The `count` most recent sessions whose close has passed at `now`."""
    cal = nyse_calendar(start)
    now = now or pd.Timestamp.now(tz="UTC")
    closes = cal.schedule["close"]
    done = closes[closes <= now].index[-count:]
    return [d.strftime("%Y-%m-%d") for d in done]


def trading_sessions_partitions(start: str) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the current session is a partition from its midnight, so the evening
    # schedule can load it on the same day.
    return dg.TimeWindowPartitionsDefinition(
        start=start,
        cron_schedule="0 0 * * 1-5",
        fmt="%Y-%m-%d",
        timezone=NY,
        exclusions=nyse_holidays(start),
        end_offset=1,
    )


SETTINGS_START = Settings.from_env().start
trading_sessions = trading_sessions_partitions(SETTINGS_START)


def session_offset(session: dt.date, count: int) -> dt.date:
    """The session `count` sessions away, clamped to the calendar's first session."""
    sessions = nyse_calendar(SETTINGS_START).sessions
    i = sessions.get_loc(pd.Timestamp(session)) + count
    return sessions[max(i, 0)].date()
