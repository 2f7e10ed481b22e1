"""Trading-session partitions: NYSE sessions (stock_assets.calendar), keyed YYYY-MM-DD."""

import datetime as dt
from functools import lru_cache

import dagster as dg
import pandas as pd

from stock_assets import calendar
from stock_assets.calendar import NY, nyse_calendar

__all__ = ["NY", "nyse_calendar", "trading_sessions_partitions"]


def nyse_holidays(start: str) -> list[dt.datetime]:
    """Weekdays from `start` on which NYSE holds no session (holidays and unscheduled closures)."""
    cal = nyse_calendar()
    weekdays = pd.bdate_range(max(pd.Timestamp(start), cal.first_session), cal.last_session)
    return [d.to_pydatetime() for d in weekdays.difference(cal.sessions)]


def sessions_between(start: str, first: str | dt.date, last: str | dt.date) -> list[dt.date]:
    return [s for s in calendar.sessions_between(first, last) if s >= dt.date.fromisoformat(start)]


def closed_sessions(start: str, count: int, now: pd.Timestamp | None = None) -> list[str]:
    """The `count` most recent sessions whose close has passed at `now`."""
    return calendar.closed_sessions(count, now, floor=start)


@lru_cache
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
