"""The session in progress, beside history: the warehouse table `live_prices`, which each live
refresh replaces whole (the intraday bars so far and one partial daily bar per symbol, each
row with the refresh's `as_of`). No table, no rows, or only rows of sessions whose final bars
are in `prices` already: there is nothing to show, and that is not an error."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from stock_assets.calendar import NY

LIVE_COLUMNS = "l.symbol, l.session, l.ts, l.interval, l.open, l.high, l.low, l.close, l.volume, l.as_of"
LIVE_SQL = f"SELECT {LIVE_COLUMNS} FROM live_prices l"
NOT_FINAL = " WHERE NOT EXISTS (SELECT 1 FROM prices p WHERE p.symbol = l.symbol AND p.session = l.session)"


@dataclass(frozen=True)
class Today:
    session: dt.date
    as_of: pd.Timestamp  # UTC: bars up to this instant
    daily: pd.DataFrame  # the partial daily bar per symbol, indexed by symbol: open, high, low, close, volume
    bars: pd.DataFrame  # the intraday bars so far (symbol, ts, close, volume, ...), in time order per symbol
    interval: str  # the bars' interval (the live interval)

    @property
    def label(self) -> str:
        """'11:00': as_of in New York time."""
        return f"{self.as_of.tz_convert(NY):%H:%M}"

    @property
    def title(self) -> str:
        return f"Today so far, as of {self.label} New York"


def read_today(warehouse, symbols: list[str] | None = None) -> Today | None:
    """The newest session of `live_prices` not loaded as final bars (of `symbols` when given), or None."""
    if not warehouse.table_exists("live_prices"):
        return None
    rows = warehouse.query(LIVE_SQL + (NOT_FINAL if warehouse.table_exists("prices") else "")).to_pandas()
    if symbols is not None:
        rows = rows[rows["symbol"].isin(symbols)]
    if rows.empty:
        return None
    session = rows["session"].max()
    rows = rows[rows["session"] == session].sort_values(["symbol", "ts"], kind="stable")
    daily = rows[rows["interval"] == "1d"].drop_duplicates("symbol", keep="last").set_index("symbol")
    bars = rows[rows["interval"] != "1d"].reset_index(drop=True)
    interval = bars["interval"].iloc[0] if len(bars) else "1d"
    return Today(session, pd.Timestamp(rows["as_of"].max()).tz_convert("UTC"), daily, bars, interval)


def today_table(today: Today, previous_close: pd.Series) -> pd.DataFrame:
    """Per symbol, the day so far: price (the partial bar's close), its move from the last final
    close (`previous_close`, per symbol: the traded close of the latest loaded bar), and the range."""
    daily = today.daily
    change = 100 * (daily["close"] / previous_close.reindex(daily.index) - 1)
    return pd.DataFrame({
        "price": daily["close"].round(2),
        "vs last close %": change.round(2),
        "open": daily["open"].round(2),
        "high": daily["high"].round(2),
        "low": daily["low"].round(2),
        "volume": daily["volume"],
    })  # fmt: skip
