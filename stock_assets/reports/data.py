"""What the dashboard shows, read from the warehouse: bars beside their indicators, and the
data-quality results, for the latest loaded sessions (a bounded period ending at the newest
session in `prices`, whichever window ran last).

Every NYSE session of the period is a row of each shown symbol, loaded or not: a session with
no bar has NaN values, so charts break their lines there and grids show it as not loaded."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from stock_assets import clock
from stock_assets.calendar import NY, nyse_calendar, session_bounds, session_offset, sessions_between
from stock_assets.settings import BARS_PER_SESSION
from stock_assets.transforms.indicators import VALUES

BARS_SQL = (
    "SELECT p.symbol, p.session, p.ts, p.interval, p.close, p.adj_close, p.volume, p.source, "
    + ", ".join(f"i.{name}" for name in VALUES)
    + ", i.price_basis FROM prices p LEFT JOIN indicators i "
    "ON i.symbol = p.symbol AND i.interval = p.interval AND i.ts = p.ts "
    "WHERE p.session BETWEEN ? AND ? AND p.interval = ? ORDER BY p.symbol, p.ts"
)
INTERVALS_SQL = "SELECT interval, count(*) AS bars FROM prices WHERE session BETWEEN ? AND ? GROUP BY interval"
BARS_SHOWN = 2_000  # per symbol at most: 250 daily or hourly sessions, 25 of 5min bars, 5 of 1min
FIRST_SQL = "SELECT min(session) AS first FROM prices WHERE session BETWEEN ? AND ? AND interval = ?"
DQ_SQL = (
    "SELECT session, check_name, asset, passed, severity, observed, sample FROM dq_report "
    "WHERE session BETWEEN ? AND ? ORDER BY session, check_name"
)


@dataclass(frozen=True)
class ReportData:
    first: dt.date
    last: dt.date
    interval: str
    bars: pd.DataFrame  # per shown symbol, a row per bar and per session of the period it lacks (NaN)
    quality: pd.DataFrame  # dq_report rows of the period
    sessions: list[dt.date]  # every NYSE session of the period
    loaded: list[dt.date]  # the sessions of the period with at least one bar
    universe: list[str]  # every symbol with a bar in the period; `symbols` are the ones shown

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars["symbol"].unique())

    @property
    def sources(self) -> list[str]:
        return sorted(self.bars["source"].dropna().unique())

    @property
    def not_loaded(self) -> list[dt.date]:
        return sorted(set(self.sessions) - set(self.loaded))


def main_interval(counts: pa.Table) -> str:
    """The interval with the most bars ('1d' on a tie; `counts`: interval, bars): one report shows one bar size."""
    if not counts.num_rows:
        return "1d"
    bars = dict(zip(counts["interval"].to_pylist(), counts["bars"].to_pylist()))
    return max(bars, key=lambda k: (bars[k], k == "1d"))


def shown_sessions(sessions: int, interval: str) -> int:
    """At most `sessions`, and no more than BARS_SHOWN bars of `interval` per symbol."""
    return max(1, min(sessions, BARS_SHOWN // BARS_PER_SESSION.get(interval, 1)))


def loaded_extent(warehouse) -> tuple[dt.date | None, dt.date | None]:
    """The first and the newest session in `prices` (None, None when it is empty)."""
    if not warehouse.table_exists("prices"):
        return None, None
    row = warehouse.query("SELECT min(session) AS first, max(session) AS last FROM prices").to_pylist()[0]
    return row["first"], row["last"]


def latest_session() -> dt.date:
    """The session of today in New York (clock.now()), else the one before: a page before anything loaded."""
    today = pd.Timestamp(clock.now()).tz_convert(NY).tz_localize(None).normalize()
    return nyse_calendar().date_to_session(today, direction="previous").date()


def read_report_data(warehouse, sessions: int, max_symbols: int | None = None, last: dt.date | None = None,
                     interval: str | None = None) -> ReportData:  # fmt: skip
    """The report's rows for the `sessions` NYSE sessions up to `last` (default: the newest
    loaded), from the first of them loaded (a hole after it is shown as one); past `max_symbols` only the first symbols
    (alphabetically) are shown: a page (and its build time) for hundreds of symbols helps nobody.
    One interval: `interval` (STOCK_ASSETS_INTERVAL) when the period has bars of it, else the one
    with most bars. Intraday bars: fewer sessions, so that a symbol has at most BARS_SHOWN bars."""
    oldest, newest = loaded_extent(warehouse)
    last = last or newest or latest_session()
    first = session_offset(last, -(sessions - 1))
    first = max(first, oldest) if oldest and oldest <= last else first
    exists = warehouse.table_exists("prices")
    counts = warehouse.query(INTERVALS_SQL, [first, last]) if exists else None
    if counts is None or interval not in counts["interval"].to_pylist():
        interval = main_interval(counts) if counts is not None else "1d"
    first = max(first, session_offset(last, -(shown_sessions(sessions, interval) - 1)))
    if exists:  # never-loaded sessions before the first loaded one of the period are not history (an older range backfilled)
        first = warehouse.query(FIRST_SQL, [first, last, interval]).to_pylist()[0]["first"] or first
    if not exists:
        frame = pd.DataFrame(columns=["symbol", "session", "ts", "interval", "close", "adj_close", "volume", "source", *VALUES, "price_basis"])
    else:
        frame = warehouse.query(BARS_SQL, [first, last, interval]).to_pandas()
    universe = sorted(frame["symbol"].unique())
    shown = universe[:max_symbols] if max_symbols is not None else universe
    frame = frame[frame["symbol"].isin(shown)]
    period = sessions_between(first, last)
    loaded = sorted(set(frame["session"]))
    frame = _with_missing_sessions(frame, shown, period)
    frame["price"] = frame["adj_close"].fillna(frame["close"])
    quality = warehouse.query(DQ_SQL, [first, last]).to_pandas() if warehouse.table_exists("dq_report") else pd.DataFrame()
    return ReportData(first, last, interval, frame, quality, period, loaded, universe)


def _with_missing_sessions(frame: pd.DataFrame, symbols: list[str], period: list[dt.date]) -> pd.DataFrame:
    """A NaN row for every (symbol, session of the period) without a bar, so a hole stays a hole."""
    if not symbols:
        return frame
    have = pd.MultiIndex.from_frame(frame[["symbol", "session"]])
    every = pd.MultiIndex.from_product([symbols, period], names=["symbol", "session"])
    missing = every.difference(have).to_frame(index=False)
    missing["interval"] = frame["interval"].iloc[0] if len(frame) else "1d"
    if len(missing) and missing["interval"].iloc[0] != "1d":  # on a time axis, the hole sits where its session opened
        opens = {s: session_bounds(s)[0] for s in missing["session"].unique()}
        missing["ts"] = pd.to_datetime(missing["session"].map(opens), utc=True).astype(frame["ts"].dtype)
    together = pd.concat([frame, missing], ignore_index=True) if len(missing) else frame
    return together.sort_values(["symbol", "session", "ts"], na_position="first", kind="stable").reset_index(drop=True)
