"""Item 6, indicators: the project's computation against a per-symbol TA-Lib loop and against
pandas groupby rolling/ewm, the same indicator set over the same synthetic bars (500 symbols
x 10 years). The TA-Lib loop's values are compared with ours (they share definitions); the
pandas baseline seeds its EMAs differently (first value, not an SMA), so only its speed is
compared.
"""

import datetime as dt

import numpy as np
import pyarrow as pa

from benchmarks.common import (
    REPEATS,
    START,
    child_env,
    child_main,
    median,
    new_home,
    peak_rss_mib,
    remove_home,
    repeat,
    run_child,
    scaled,
    sessions_after,
    universe,
)

KEYS = ["symbol", "session", "ts", "interval"]
COLUMNS = KEYS + ["high", "low", "close", "adj_close"]
SQRT_YEAR = np.sqrt(252)


def talib_loop(bars: pa.Table):
    """The way a notebook does it: pandas, one TA-Lib call per symbol and indicator."""
    import pandas as pd
    import talib

    df = bars.select(COLUMNS).to_pandas().sort_values(["symbol", "interval", "ts"])
    parts = []
    for _, g in df.groupby(["symbol", "interval"], sort=False):
        price = g["adj_close"].fillna(g["close"]).to_numpy()
        high, low, close = (g[c].to_numpy() for c in ("high", "low", "close"))
        cols = {f"sma_{n}": talib.SMA(price, n) for n in (7, 20, 30, 50, 200)}
        cols["ema_12"], cols["ema_26"] = talib.EMA(price, 12), talib.EMA(price, 26)
        cols["macd"], cols["macd_signal"], cols["macd_hist"] = talib.MACD(price, 12, 26, 9)
        cols["bb_upper"], cols["bb_middle"], cols["bb_lower"] = talib.BBANDS(price, 20, 2.0, 2.0, talib.MA_Type.SMA)
        cols["rsi_14"], cols["atr_14"] = talib.RSI(price, 14), talib.ATR(high, low, close, 14)
        cols["pct_change"] = talib.ROCP(price, 1)
        cols["log_return"] = np.log1p(cols["pct_change"])
        cols["volatility_20"] = talib.STDDEV(cols["log_return"], 20, 1.0) * np.sqrt(20 / 19) * SQRT_YEAR  # sample std
        parts.append(g[KEYS].assign(**cols))
    return pd.concat(parts, ignore_index=True)


def pandas_rolling(bars: pa.Table):
    """Vectorized pandas: groupby(...).rolling / .ewm over the whole table."""
    df = bars.select(COLUMNS).to_pandas().sort_values(["symbol", "interval", "ts"], ignore_index=True)
    series = (df["symbol"] + "|" + df["interval"]).ne((df["symbol"] + "|" + df["interval"]).shift()).cumsum()
    price = df["adj_close"].fillna(df["close"])

    def roll(s, n, how, **kw):
        return getattr(s.groupby(series).rolling(n), how)(**kw).droplevel(0)

    def ewm(s, **kw):
        return s.groupby(series).ewm(adjust=False, **kw).mean().droplevel(0)

    out = df[KEYS].copy()
    for n in (7, 20, 30, 50, 200):
        out[f"sma_{n}"] = roll(price, n, "mean")
    out["ema_12"], out["ema_26"] = ewm(price, span=12), ewm(price, span=26)
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = ewm(out["macd"], span=9)
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    sd = roll(price, 20, "std", ddof=0)
    out["bb_middle"], out["bb_upper"], out["bb_lower"] = out["sma_20"], out["sma_20"] + 2 * sd, out["sma_20"] - 2 * sd
    delta = price.groupby(series).diff()
    gain, loss = ewm(delta.clip(lower=0), alpha=1 / 14), ewm(-delta.clip(upper=0), alpha=1 / 14)
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    prev = df["close"].groupby(series).shift()
    true_range = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - prev).abs(), (df["low"] - prev).abs()))
    out["atr_14"] = ewm(true_range, alpha=1 / 14)
    out["pct_change"] = price.groupby(series).pct_change()
    out["log_return"] = np.log1p(out["pct_change"])
    out["volatility_20"] = roll(out["log_return"], 20, "std") * SQRT_YEAR
    return out


def max_difference(ours: pa.Table, loop, columns=("sma_20", "ema_26", "macd", "rsi_14", "atr_14", "volatility_20")) -> dict:
    """Largest |ours - TA-Lib loop| per column, rows in the same (symbol, interval, ts) order."""
    diffs = {}
    for c in columns:
        if c not in ours.column_names:
            continue
        a = ours[c].to_numpy(zero_copy_only=False).astype(float)
        b = loop[c].to_numpy(dtype=float)
        both = np.isfinite(a) & np.isfinite(b)
        diffs[c] = float(np.max(np.abs(a[both] - b[both]))) if both.any() else None
    return diffs


def child(symbols: int, first: str, sessions: int, repeats: int = REPEATS) -> dict:
    from benchmarks.adapters import compute_indicators, synthetic_table

    bars = synthetic_table(universe(symbols), [dt.date.fromisoformat(s) for s in sessions_after(first, sessions)])
    n = bars.num_rows
    out = {"rows": n, "symbols": symbols, "sessions": sessions}
    for name, fn in (("ours", compute_indicators), ("talib_loop", talib_loop), ("pandas", pandas_rolling)):
        seconds, result = repeat(lambda fn=fn: fn(bars), repeats)
        out[name] = {"seconds": seconds, "median_s": median(seconds), "rows_per_s": n / median(seconds), "rows_out": len(result)}
        if name == "ours":
            ours = result
        elif name == "talib_loop":
            out["max_abs_diff_vs_talib_loop"] = max_difference(ours, result)
    out["ratio_vs_talib_loop"] = out["ours"]["rows_per_s"] / out["talib_loop"]["rows_per_s"]
    out["ratio_vs_pandas"] = out["ours"]["rows_per_s"] / out["pandas"]["rows_per_s"]
    return out | {"peak_rss_mib": round(peak_rss_mib(), 1)}


def run() -> dict:
    home = new_home("indicators")
    try:
        args = {"symbols": scaled(500), "first": START, "sessions": scaled(2520)}
        return run_child("indicators", args, child_env(home, universe(1)))
    finally:
        remove_home(home)


if __name__ == "__main__":
    child_main(child)
