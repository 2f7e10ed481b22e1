"""Every bar a provider returns is accounted for: landed when it belongs to a session of the
window, set aside with a named reason when it is in the window but on no NYSE session (or has
no date), and counted as outside the window otherwise (a full-history answer: raw/ keeps it)."""

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from stock_assets import tables

REASONS = {  # a short name (for file names) -> the reason, as the run's logs say it
    "not-a-session": "dated in the window on a day that is not an NYSE session",
    "no-date": "without a session date",
}


@dataclass
class SortedBars:
    landed: pa.Table
    outside_window: int
    set_aside: dict[str, pa.Table] = field(default_factory=dict)  # short reason (REASONS) -> bars

    def counts(self) -> dict[str, int]:
        aside = sum(t.num_rows for t in self.set_aside.values())
        return {
            "returned": self.landed.num_rows + aside + self.outside_window,
            "landed": self.landed.num_rows,
            "set_aside": aside,
            "outside_window": self.outside_window,
        }


def sort_window_bars(bars: pa.Table, sessions: list[dt.date]) -> SortedBars:
    """Split parsed bars by where they go, for a window of NYSE `sessions` (in order)."""
    day = bars["session"]
    first, last = (pa.scalar(s, pa.date32()) for s in (sessions[0], sessions[-1]))
    no_date = pc.is_null(day)
    in_range = pc.fill_null(pc.and_(pc.greater_equal(day, first), pc.less_equal(day, last)), False)
    is_session = pc.fill_null(pc.is_in(day, value_set=pa.array(sessions, pa.date32())), False)
    aside = {"not-a-session": bars.filter(pc.and_(in_range, pc.invert(is_session))), "no-date": bars.filter(no_date)}
    outside = bars.num_rows - int(pc.sum(in_range).as_py() or 0) - int(pc.sum(no_date).as_py() or 0)
    return SortedBars(tables.only(bars, is_session), outside, {why: t for why, t in aside.items() if t.num_rows})


def sample_keys(bars: pa.Table, limit: int = 5) -> str:
    keys = [f"{r['symbol']}@{r['session']}" for r in bars.select(["symbol", "session"]).slice(0, limit).to_pylist()]
    return ", ".join(keys) + (f" and {bars.num_rows - limit} more" if bars.num_rows > limit else "")
