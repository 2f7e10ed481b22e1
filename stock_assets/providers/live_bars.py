"""The session in progress, as every provider sees it: is a session running, and which of a
payload's bars a live refresh may show.

A provider answers for the session in progress with what it has: Alpha Vantage's latest 100
bars reach back into earlier sessions, a delayed feed may hold the bar still forming at its
delay, Polygon's minute aggregates run from 04:00 and an hour bar starts on the clock hour. The
raw payload is kept as received; `bars_so_far` cuts the parsed bars to that session's bars that
overlap its regular hours and have ended by `until` (the refresh's `as_of`: now minus the
provider's `live_delay`). A bar ends at its start plus its interval, or at the close if sooner.
"""

import datetime as dt
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import session_bounds

MINUTE_US = 60_000_000


def in_progress(session: dt.date, now: dt.datetime) -> bool:
    """Has `session` opened and not closed at `now`? The close (an early one too) counts as in
    progress, as for the live refresh, whose last run is at the close. A provider with a delay
    asks this of now minus its delay: its feed reaches the close `live_delay` after it."""
    opened, closing = session_bounds(session)
    return opened <= now <= closing


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def bars_so_far(bars: pa.Table, session: dt.date, until: dt.datetime) -> pa.Table:
    """The intraday bars of `bars` (BAR_SCHEMA) in `session`'s regular hours that have ended by
    `until`, sorted by symbol and ts; daily bars and every other session's are left out."""
    opened, closing = (_micros(t) for t in session_bounds(session))
    ts = pc.cast(bars["ts"], pa.int64()).to_numpy(zero_copy_only=False)
    step = np.zeros(len(ts), np.int64)
    intervals = bars["interval"].to_numpy(zero_copy_only=False)
    for interval in set(intervals.tolist()):  # a few distinct values: one pass over the rows each
        match = re.fullmatch(r"(\d+)min", str(interval))
        step[intervals == interval] = int(match[1]) * MINUTE_US if match else 0
    end = np.minimum(ts + step, closing)
    days = pc.fill_null(pc.equal(bars["session"], pa.scalar(session, pa.date32())), False).to_numpy(zero_copy_only=False)
    keep = days & (step > 0) & (ts + step > opened) & (ts < closing) & (end <= _micros(until))
    return bars.filter(pa.array(keep)).sort_by([("symbol", "ascending"), ("ts", "ascending")])
