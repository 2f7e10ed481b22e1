"""Indicator values, as pure functions: against TA-Lib's own regression values (fixtures/talib/),
against TA-Lib called symbol by symbol on random series for many symbols at once (shuffled,
mixed intervals, adjusted and not, short histories), and the adjusted-price rules: a split
is no crash and no fake true range, a bad bar is NULL and skipped, NULL is never NaN."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import talib

from stock_assets.transforms.indicators import INDICATOR_SCHEMA, VALUES, compute_indicators
from stock_assets_tests.conftest import FIXTURES

C_REGTEST = json.loads((FIXTURES / "talib" / "talib_c_regtest_reference_close252.json").read_text())
PY_TESTS = json.loads((FIXTURES / "talib" / "talib_python_tests_ford2012_and_expected.json").read_text())
CLOSE252 = C_REGTEST["close"]


def bars(close, high=None, low=None, adj=None, symbol="REF", interval="1d", start="2000-01-03") -> pa.Table:
    sessions = pd.bdate_range(start, periods=len(close))
    return pa.table({
        "symbol": [symbol] * len(close),
        "session": pa.array(sessions.date, pa.date32()),
        "ts": pa.array(sessions.tz_localize("UTC"), pa.timestamp("us", tz="UTC")),
        "interval": [interval] * len(close),
        "high": pa.array(close if high is None else high, pa.float64()),
        "low": pa.array(close if low is None else low, pa.float64()),
        "close": pa.array(close, pa.float64()),
        "adj_close": pa.array([None] * len(close) if adj is None else adj, pa.float64()),
    })  # fmt: skip


def column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False).astype(float)  # NULL -> NaN


def first_defined(values: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isnan(values))[0])


def test_the_output_is_the_designed_table():
    out = compute_indicators(bars(CLOSE252))
    assert out.schema == INDICATOR_SCHEMA
    assert out.column_names[:4] == ["symbol", "session", "ts", "interval"] and out.column_names[4:-1] == list(VALUES)
    assert out.num_rows == 252 and set(out["price_basis"].to_pylist()) == {"close"}
    for name in VALUES:  # undefined is NULL, never NaN (NaN would not read as missing in SQL)
        assert not pc.any(pc.is_nan(out[name])).as_py(), name


@pytest.mark.parametrize("k", ["0", "1", "2", "29", "221", "222"])
def test_sma_30_matches_the_ta_lib_c_regression_values(k):
    spec = C_REGTEST["expected"]["SMA"]["period_30_COMPAT_DEFAULT"]
    sma = column(compute_indicators(bars(CLOSE252)), "sma_30")
    assert first_defined(sma) == spec["begIdx"] == 29
    assert sma[spec["begIdx"] + int(k)] == pytest.approx(spec["out"][k], abs=1e-2)  # upstream prints 2 decimals


def test_macd_matches_the_ta_lib_c_regression_values():
    spec = C_REGTEST["expected"]["MACD_12_26_9"]
    out = compute_indicators(bars(CLOSE252))
    macd, signal, hist = (column(out, c) for c in ("macd", "macd_signal", "macd_hist"))
    assert first_defined(macd) == first_defined(signal) == first_defined(hist) == spec["begIdx"] == 33
    i = spec["begIdx"]
    assert (macd[i], signal[i], hist[i]) == pytest.approx(tuple(spec["out_k0"][c] for c in ("macd", "signal", "hist")), abs=1e-4)
    # TA-Lib seeds the fast EMA where the slow one starts, so MACD is not ema_12 - ema_26 at first
    assert abs(macd[i] - (column(out, "ema_12")[i] - column(out, "ema_26")[i])) > 1e-3
    assert macd[251] == pytest.approx(C_REGTEST["computed_here_not_upstream"]["MACD_12_26_9_at_input_idx251_all_variants"][0], abs=1e-4)


def test_bollinger_matches_the_ta_lib_c_regression_values_with_population_std():
    spec = C_REGTEST["expected"]["BBANDS_20_2_2_SMA"]
    out = compute_indicators(bars(CLOSE252))
    i = spec["begIdx"]
    upper, middle, lower = (column(out, c)[i] for c in ("bb_upper", "bb_middle", "bb_lower"))
    assert (upper, middle, lower) == pytest.approx((spec["out_k0"]["upper"], spec["out_k0"]["middle"], spec["out_k0"]["lower"]), abs=1e-4)
    assert abs(upper - 98.2080) > 0.1  # the sample-std (ddof=1) band is wrong
    assert column(out, "bb_middle")[i] == column(out, "sma_20")[i]
    assert column(out, "bb_pctb")[i] == pytest.approx((CLOSE252[i] - lower) / (upper - lower))
    assert column(out, "bb_bandwidth")[i] == pytest.approx((upper - lower) / middle)


def test_rsi_volatility_and_returns_match_the_cross_checks():
    cross = C_REGTEST["computed_here_not_upstream"]  # an independent re-implementation, 4-6 decimals
    out = compute_indicators(bars(CLOSE252))
    rsi = column(out, "rsi_14")
    assert first_defined(rsi) == 14 and rsi[14] == pytest.approx(cross["RSI14_first_wilder_input_idx14"], abs=1e-4)
    assert rsi[-1] == pytest.approx(cross["RSI14_last"]["wilder_sma_seed"], abs=1e-4)
    volatility = column(out, "volatility_20")
    assert first_defined(volatility) == 20  # 20 log returns need 21 prices
    assert volatility[-1] == pytest.approx(cross["volatility_close252"]["vol20_last_log_ddof1_sqrt252"], abs=1e-6)
    assert column(out, "pct_change")[-1] == pytest.approx(cross["volatility_close252"]["pct_change_last"], abs=1e-8)
    assert column(out, "log_return")[-1] == pytest.approx(np.log(CLOSE252[-1] / CLOSE252[-2]), rel=1e-12)


def test_ema_is_seeded_with_the_sma_of_the_first_n_values():
    # fixtures: EMA(arange(10), 3) is x - 1 from index 2 (TA-Lib's default), not 1.25, 2.125, ... (Metastock)
    assert PY_TESTS["expected"]["EMA(arange(10), 3) compatibility=0 (default, SMA seed)"][2:] == list(range(1, 9))
    ramp = np.arange(60, dtype=float) + 1
    out = compute_indicators(bars(ramp))
    for n in (12, 26):
        ema = column(out, f"ema_{n}")
        assert first_defined(ema) == n - 1
        np.testing.assert_allclose(ema[n - 1 :], ramp[n - 1 :] - (n - 1) / 2, rtol=1e-13)


def test_rsi_of_tiny_prices_is_scale_free_as_in_ta_lib():
    tiny = PY_TESTS["expected"]["RSI(a, 10) tiny-price input (also identical for a*1e5)"]["input"]
    small, large = (column(compute_indicators(bars(np.array(tiny) * s)), "rsi_14") for s in (1, 1e5))
    assert first_defined(small) == 14
    np.testing.assert_allclose(small[14:], large[14:], rtol=1e-9)
    np.testing.assert_allclose(small[14:], talib.RSI(np.array(tiny), 14)[14:], rtol=1e-12)


def test_atr_matches_ta_lib_on_ford_2012():
    ford = PY_TESTS["ford_2012"]
    out = compute_indicators(bars(ford["close"], high=ford["high"], low=ford["low"]))
    expected = talib.ATR(*(np.array(ford[c]) for c in ("high", "low", "close")), 14)
    atr = column(out, "atr_14")
    assert first_defined(atr) == 14
    np.testing.assert_allclose(atr[14:], expected[14:], rtol=1e-12)
