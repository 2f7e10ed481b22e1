"""Technical indicators per (symbol, interval), by TA-Lib's definitions.

The price is `adj_close` where the bar has one, else `close`; `price_basis` says which, per
row. ATR needs high, low and close: all three are scaled by the bar's adj_close / close, the
factor a split or dividend adjustment applies to the whole bar, so an adjusted series has no
fake true range on a split day. TA-Lib does the arithmetic, one call per (symbol, interval)
series and indicator; the rest is vectorized NumPy. A bar without a positive high, low,
close and price is left out of its series and gets NULLs. A series that skips an NYSE session
(a hole in the loaded history, or a bar left out) starts again after it: indicators whose
window reaches across the hole are NULL, never averaged over it. Intraday series are
session-aware the same way: a symbol's hourly bars run on from one session's last bar to the
next session's first (the overnight move is one bar's), a skipped session breaks them, and the
volatility is annualized by the bars of a year (252 sessions × settings.BARS_PER_SESSION).

A window is computed from a bounded lookback (`indicators_for_window`): SMAs and the
volatility need at most 200 bars, and the EMA-family values (EMA, MACD, RSI, ATR) forget
their seed by (1 - alpha) per bar. The slowest is Wilder's alpha = 1/14 (RSI, ATR): after
LOOKBACK_SESSIONS = 400 bars, (13/14)^386 = 4e-13. Measured against full history on three
years of synthetic prices, RSI's worst relative error is 6e-10 with 300 bars of lookback
and 4e-13 with 400 (stock_assets_tests/test_indicators_windows.py holds it under 1e-9).
"""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import talib

from stock_assets import tables
from stock_assets.calendar import session_offset, session_positions
from stock_assets.settings import BARS_PER_SESSION
from stock_assets.warehouse.ddl import window_sql

LOOKBACK_SESSIONS = 400
KEYS = ("symbol", "session", "ts", "interval")
VALUES = (
    "sma_7", "sma_20", "sma_30", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
    "bb_upper", "bb_middle", "bb_lower", "bb_pctb", "bb_bandwidth", "rsi_14", "atr_14", "pct_change",
    "log_return", "volatility_20",
)  # fmt: skip
INDICATOR_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("session", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")), ("interval", pa.string())]
    + [(name, pa.float64()) for name in VALUES]
    + [("price_basis", pa.string())]  # "adj_close" or "close": what the price columns were computed on
)
PRICE_COLUMNS = ("high", "low", "close", "adj_close")
TRADING_DAYS = 252  # sessions a year


def series_indicators(price: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, bars_a_year: float = TRADING_DAYS) -> dict[str, np.ndarray]:
    """Every indicator of one (symbol, interval) series in time order; NaN where not defined yet.
    The volatility is annualized by √bars_a_year: 252 daily bars, 252 × 7 hourly ones."""
    out = {f"sma_{n}": talib.SMA(price, n) for n in (7, 20, 30, 50, 200)}
    out["ema_12"], out["ema_26"] = talib.EMA(price, 12), talib.EMA(price, 26)
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(price, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(price, 20, 2.0, 2.0, talib.MA_Type.SMA)  # population std
    out["rsi_14"] = talib.RSI(price, 14)
    out["atr_14"] = talib.ATR(high, low, close, 14)
    ratio = np.concatenate([[np.nan], price[1:] / price[:-1]])
    log_return = np.log(ratio)
    volatility = np.full(len(price), np.nan)
    if len(price) >= 20:  # sample std of the last 20 log returns, annualized; NaN until 20 exist
        windows = np.lib.stride_tricks.sliding_window_view(log_return, 20)
        volatility[19:] = windows.std(axis=1, ddof=1) * np.sqrt(bars_a_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        out |= {
            "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
            "bb_pctb": (price - lower) / (upper - lower), "bb_bandwidth": (upper - lower) / middle,
        }  # fmt: skip
    return out | {"pct_change": ratio - 1, "log_return": log_return, "volatility_20": volatility}


def _float(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN


def _days(column: pa.ChunkedArray) -> np.ndarray:
    return column.combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)


def compute_indicators(bars: pa.Table) -> pa.Table:
    """INDICATOR_SCHEMA rows, one per bar of `bars` (canonical bar columns; at least the keys,
    high, low and close), ordered by symbol, interval, ts."""
    bars = tables.sort(bars, ["symbol", "interval", "ts"])
    n = bars.num_rows
    high, low, close, adj = (_float(bars, c) for c in PRICE_COLUMNS)
    adjusted = np.isfinite(adj)
    price = np.where(adjusted, adj, close)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = price / close
    valid = (price > 0) & (close > 0) & (high > 0) & (low > 0)  # NaN compares False
    values = {name: np.full(n, np.nan) for name in VALUES}

    starts = np.flatnonzero(tables.starts(bars, ["symbol", "interval"]))
    position = session_positions(_days(bars["session"])) if n else np.zeros(0, np.int64)
    for start, stop in zip(starts, [*starts[1:], n]):  # one slice per (symbol, interval) series
        rows = start + np.flatnonzero(valid[start:stop])
        bars_a_year = TRADING_DAYS * BARS_PER_SESSION.get(bars["interval"][int(start)].as_py(), 1)
        # A session the series skips is a hole: each stretch between holes is its own series,
        # so no value is ever averaged across one (the first bars after a hole are NULL again).
        for stretch in np.split(rows, np.flatnonzero(np.diff(position[rows]) > 1) + 1):
            if stretch.size:
                # Usually every row of the series: a slice then (views in, a copy out), not a gather and a scatter.
                at = slice(stretch[0], stretch[-1] + 1) if stretch[-1] - stretch[0] + 1 == stretch.size else stretch
                f = factor[at]
                series = series_indicators(price[at], high[at] * f, low[at] * f, close[at] * f, bars_a_year)
                for name, column in series.items():
                    values[name][at] = column

    columns = [bars[k] for k in KEYS]
    columns += [pa.array(values[name], pa.float64(), mask=~np.isfinite(values[name])) for name in VALUES]
    columns.append(pc.if_else(pa.array(adjusted), "adj_close", "close"))
    table = pa.Table.from_arrays(columns, names=list(KEYS) + list(VALUES) + ["price_basis"])
    return table.cast(INDICATOR_SCHEMA)


def indicators_for_window(warehouse, first: dt.date, last: dt.date, lookback: int = LOOKBACK_SESSIONS, symbols=None) -> tuple[pa.Table, dt.date]:
    """The indicators of sessions first..last (of `symbols` only, when given), from the warehouse
    `prices` of those sessions and the `lookback` sessions before: the cost is the same with 1 or
    20 years of history behind. Returns the rows and the first session read."""
    since = session_offset(first, -lookback)
    bars = warehouse.query(
        f"SELECT symbol, session, ts, interval, high, low, close, adj_close FROM prices WHERE {window_sql(since, last, symbols)}"
        " ORDER BY symbol, interval, ts"
    )
    values = compute_indicators(bars)
    return tables.only(values, pc.greater_equal(values["session"], pa.scalar(first, pa.date32()))), since
