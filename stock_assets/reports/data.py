"""What the dashboard shows, read from the warehouse: bars beside their indicators, and the
data-quality results, for the latest loaded sessions (a bounded period ending at the newest
session in `prices`, whichever window ran last).

Every NYSE session of the period is a row of each shown symbol, loaded or not: a session with
no bar has NaN values, so charts break their lines there and grids show it as not loaded."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import session_offset, sessions_between
from stock_assets.transforms.indicators import VALUES

BARS_SQL = (
    "SELECT p.symbol, p.session, p.ts, p.interval, p.close, p.adj_close, p.volume, p.source, "
    + ", ".join(f"i.{name}" for name in VALUES)
    + ", i.price_basis FROM prices p LEFT JOIN indicators i "
    "ON i.symbol = p.symbol AND i.interval = p.interval AND i.ts = p.ts "
    "WHERE p.session BETWEEN ? AND ? ORDER BY p.symbol, p.interval, p.ts"
)
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


def main_interval(bars: pa.Table) -> str:
    """The interval with the most bars ('1d' on a tie): one report shows one bar size."""
    if not bars.num_rows:
        return "1d"
    counts = {c["values"]: c["counts"] for c in pc.value_counts(bars["interval"]).to_pylist()}
    return max(counts, key=lambda k: (counts[k], k == "1d"))


def loaded_extent(warehouse) -> tuple[dt.date | None, dt.date | None]:
    """The first and the newest session in `prices` (None, None when it is empty)."""
    if not warehouse.table_exists("prices"):
        return None, None
    row = warehouse.query("SELECT min(session) AS first, max(session) AS last FROM prices").to_pylist()[0]
    return row["first"], row["last"]


def read_report_data(warehouse, sessions: int, max_symbols: int | None = None, last: dt.date | None = None) -> ReportData:
    """The report's rows for the `sessions` NYSE sessions up to `last` (default: the newest
    loaded), not before the first loaded one; past `max_symbols` only the first symbols
    (alphabetically) are shown: a page (and its build time) for hundreds of symbols helps nobody."""
    oldest, newest = loaded_extent(warehouse)
    last = last or newest or dt.date.today()
    first = session_offset(last, -(sessions - 1))
    first = max(first, oldest) if oldest and oldest <= last else first
    bars = warehouse.query(BARS_SQL, [first, last]) if warehouse.table_exists("prices") else None
    interval = main_interval(bars) if bars is not None else "1d"
    if bars is None:
        frame = pd.DataFrame(columns=["symbol", "session", "ts", "interval", "close", "adj_close", "volume", "source", *VALUES, "price_basis"])
    else:
        frame = bars.filter(pc.equal(bars["interval"], interval)).to_pandas()
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
    together = pd.concat([frame, missing], ignore_index=True) if len(missing) else frame
    return together.sort_values(["symbol", "session", "ts"], na_position="first", kind="stable").reset_index(drop=True)
