"""NYSE trading sessions (exchange_calendars XNYS), with no Dagster and no settings in it:
what a session is, when it opens and closes, which have ended, and counting by sessions."""

import datetime as dt
import warnings
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from stock_assets import clock

NY = "America/New_York"
FIRST = "1990-01-02"  # the calendar's own start; partitions start later (STOCK_ASSETS_START)


@lru_cache
def nyse_calendar(start: str = FIRST) -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars reads a tz-aware Series.values, which pandas 3.1 deprecates
        # (Pandas4Warning); nothing of ours does. Its answer is unchanged.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray", category=DeprecationWarning)
        return xcals.get_calendar("XNYS", start=min(start, FIRST))


@lru_cache
def _session_days() -> np.ndarray:
    """Every session as days since 1970, sorted: positions for vectorized counting."""
    return (nyse_calendar().sessions.to_numpy().astype("datetime64[D]")).astype(np.int64)


def session_positions(days: np.ndarray) -> np.ndarray:
    """Each date's (days since 1970) position in the session calendar; a date that is not a
    session gets the next session's position, so only a skipped session opens a gap."""
    return np.searchsorted(_session_days(), days)


def is_session(day: dt.date) -> bool:
    return nyse_calendar().is_session(pd.Timestamp(day))


def sessions_between(first: str | dt.date, last: str | dt.date) -> list[dt.date]:
    return [d.date() for d in nyse_calendar().sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))]


def session_offset(session: dt.date, count: int, floor: str | dt.date | None = None) -> dt.date:
    """The session `count` sessions away from `session` (itself a session), not before `floor`."""
    sessions = nyse_calendar().sessions
    i = sessions.get_loc(pd.Timestamp(session)) + count
    found = sessions[min(max(i, 0), len(sessions) - 1)].date()
    if floor is not None:
        first = sessions[sessions.searchsorted(pd.Timestamp(floor))].date()
        return max(found, first)
    return found


def session_bounds(session: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """(open, close) of a session, UTC; an early close is the close."""
    row = nyse_calendar().schedule.loc[pd.Timestamp(session)]
    return row["open"].to_pydatetime(), row["close"].to_pydatetime()


def closed_sessions(count: int, now: pd.Timestamp | None = None, floor: str | None = None) -> list[str]:
    """The `count` most recent sessions whose close has passed at `now` (none before `floor`)."""
    closes = nyse_calendar().schedule["close"]
    now = now if now is not None else pd.Timestamp(clock.now())
    done = closes[closes <= now].index
    if floor is not None:
        done = done[done >= pd.Timestamp(floor)]
    return [d.strftime("%Y-%m-%d") for d in done[-count:]]
