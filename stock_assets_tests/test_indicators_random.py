"""Many symbols at once, against TA-Lib called one series at a time: random walks of random
lengths (1 bar to 700), shuffled together, some adjusted, one symbol in two intervals; and the
rules around the price: adj_close where present, a split is neither a crash nor a true range,
a bar without a usable price is NULL and left out of its series."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import talib

from stock_assets.transforms.indicators import VALUES, compute_indicators
from stock_assets_tests.test_indicators import bars, column


def random_walk(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    spread = np.abs(rng.normal(0, 0.01, n))
    return {"close": close, "high": close * (1 + spread), "low": close * (1 - spread)}


def reference(close, high, low, adj, bars_a_year=252) -> dict[str, np.ndarray]:
    """TA-Lib, one series, written out independently of the code under test (volatility annualized
    by the bars of a year: 252 sessions of one daily or seven hourly bars)."""
    price = np.where(np.isnan(adj), close, adj)
    k = price / close
    upper, middle, lower = talib.BBANDS(price, 20, 2, 2, 0)
    macd, signal, hist = talib.MACD(price, 12, 26, 9)
    log_return = pd.Series(price).apply(np.log).diff()
    return {
        **{f"sma_{n}": talib.SMA(price, n) for n in (7, 20, 30, 50, 200)},
        "ema_12": talib.EMA(price, 12), "ema_26": talib.EMA(price, 26), "macd": macd, "macd_signal": signal,
        "macd_hist": hist, "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
        "bb_pctb": (price - lower) / (upper - lower), "bb_bandwidth": (upper - lower) / middle,
        "rsi_14": talib.RSI(price, 14), "atr_14": talib.ATR(high * k, low * k, close * k, 14),
        "pct_change": pd.Series(price).pct_change().to_numpy(), "log_return": log_return.to_numpy(),
        "volatility_20": (log_return.rolling(20).std(ddof=1) * np.sqrt(bars_a_year)).to_numpy(),
    }  # fmt: skip


def test_many_symbols_at_once_equal_ta_lib_one_series_at_a_time():
    rng = np.random.default_rng(7)
    lengths = [1, 2, 13, 14, 15, 33, 34, 199, 200, 201] + list(rng.integers(1, 700, 50))
    series, tables = {}, []
    for i, n in enumerate(lengths):
        walk = random_walk(rng, n)
        adj = walk["close"] * rng.uniform(0.5, 1.0) if i % 3 == 0 else np.full(n, np.nan)  # some adjusted, some not
        symbol, interval = (f"S{i:03d}", "1d") if i != 5 else ("S004", "60min")  # S004 in two intervals
        series[(symbol, interval)] = (walk["close"], walk["high"], walk["low"], adj)
        tables.append(bars(walk["close"], walk["high"], walk["low"], np.where(np.isnan(adj), None, adj), symbol, interval))
    everything = pa.concat_tables(tables)
    shuffled = everything.take(rng.permutation(everything.num_rows))
    out = compute_indicators(shuffled)
    assert out.num_rows == sum(lengths)

    keys = list(zip(out["symbol"].to_pylist(), out["interval"].to_pylist()))
    for (symbol, interval), arrays in series.items():
        rows = np.array([k == (symbol, interval) for k in keys])
        expected = reference(*arrays, bars_a_year=252 * (7 if interval == "60min" else 1))
        for name in VALUES:
            got = column(out, name)[rows]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected[name]), err_msg=f"{symbol} {name}: NULL pattern")
            np.testing.assert_allclose(got, expected[name], rtol=1e-9, atol=1e-12, err_msg=f"{symbol} {interval} {name}")
        basis = "adj_close" if not np.isnan(arrays[3]).any() else "close"
        assert set(np.array(out["price_basis"].to_pylist())[rows]) == {basis}


def test_a_split_is_neither_a_crash_nor_a_true_range_on_adjusted_prices():
    rng = np.random.default_rng(3)
    walk = random_walk(rng, 120)
    split = np.where(np.arange(120) >= 60, 4.0, 1.0)  # a 4:1 split on day 60: raw prices drop to a quarter
    raw = {c: walk[c] / split for c in ("close", "high", "low")}
    adjusted = walk["close"] / 4  # the provider's adj_close: history restated in post-split terms
    out = compute_indicators(bars(raw["close"], raw["high"], raw["low"], adjusted))
    assert column(out, "pct_change")[60] == pytest.approx(walk["close"][60] / walk["close"][59] - 1)
    unsplit = compute_indicators(bars(walk["close"], walk["high"], walk["low"]))
    np.testing.assert_allclose(column(out, "atr_14"), column(unsplit, "atr_14") / 4, rtol=1e-12)
    np.testing.assert_allclose(column(out, "rsi_14"), column(unsplit, "rsi_14"), rtol=1e-9)
    unadjusted = compute_indicators(bars(raw["close"], raw["high"], raw["low"]))  # what the adjustment prevents
    assert column(unadjusted, "pct_change")[60] < -0.7


def test_a_bar_without_a_usable_price_is_null_and_its_series_starts_again_after_it():
    # A bar left out is a hole like a missing session: nothing is averaged across it.
    rng = np.random.default_rng(5)
    walk = random_walk(rng, 80)
    close = walk["close"].astype(object)
    close[40], close[50] = None, 0.0  # a missing close, a zero close
    out = compute_indicators(bars(close, walk["high"], walk["low"]))
    assert all(out[name][i].as_py() is None for name in VALUES for i in (40, 50))
    for lo, hi in ((0, 40), (41, 50), (51, 80)):
        alone = compute_indicators(bars(walk["close"][lo:hi], walk["high"][lo:hi], walk["low"][lo:hi]))
        for name in VALUES:
            np.testing.assert_array_equal(column(out, name)[lo:hi], column(alone, name), err_msg=f"{name} {lo}..{hi}")


def test_no_bars_give_an_empty_table():
    out = compute_indicators(bars([]))
    assert out.num_rows == 0 and out.column_names[-1] == "price_basis"
