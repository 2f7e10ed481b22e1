"""What the dashboard shows, read from the warehouse: bars beside their indicators, and the
data-quality results, for a bounded range of sessions ending at the report's last session."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.partitions import session_offset
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
    bars: pd.DataFrame  # one row per bar: price, volume, every indicator (NaN where undefined)
    quality: pd.DataFrame  # dq_report rows of the range

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars["symbol"].unique())

    @property
    def sources(self) -> list[str]:
        return sorted(self.bars["source"].dropna().unique())


def main_interval(bars: pa.Table) -> str:
    """The interval with the most bars ('1d' on a tie): one report shows one bar size."""
    if not bars.num_rows:
        return "1d"
    counts = {c["values"]: c["counts"] for c in pc.value_counts(bars["interval"]).to_pylist()}
    return max(counts, key=lambda k: (counts[k], k == "1d"))


def read_report_data(warehouse, last: dt.date, sessions: int, max_symbols: int | None = None) -> ReportData:
    """The report's rows; past `max_symbols` only the first symbols (alphabetically) are kept:
    a page (and its build time) for hundreds of symbols helps nobody."""
    first = session_offset(last, -(sessions - 1))
    bars = warehouse.query(BARS_SQL, [first, last])
    interval = main_interval(bars)
    bars = bars.filter(pc.equal(bars["interval"], interval))
    if max_symbols is not None:
        kept = pa.array(sorted(set(bars["symbol"].to_pylist()))[:max_symbols], pa.string())
        bars = bars.filter(pc.is_in(bars["symbol"], value_set=kept))
    quality = warehouse.query(DQ_SQL, [first, last]) if warehouse.table_exists("dq_report") else pa.table({})
    frame = bars.to_pandas()
    frame["price"] = frame["adj_close"].fillna(frame["close"])
    shown = frame["session"].min() if len(frame) else first  # history may start later than the range
    return ReportData(shown, last, interval, frame, quality.to_pandas())
