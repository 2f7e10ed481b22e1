"""The synthetic provider: deterministic across ranges, realistic bars, faults with exact counts."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic, synthetic_bars

START = "2015-01-02"


def bars(provider: SyntheticProvider, symbols, first, last):
    sessions = sessions_between(START, first, last)
    payloads = provider.fetch(list(symbols), sessions, "1d").payloads
    return pa.concat_tables([parse_synthetic(p) for p in payloads]), payloads


def test_same_symbol_and_session_give_the_same_bar_whatever_the_range():
    long = synthetic_bars("AAPL", sessions_between(START, "2020-01-02", "2024-12-31")).set_index("date")
    short = synthetic_bars("AAPL", sessions_between(START, "2023-06-01", "2023-06-30")).set_index("date")
    single = synthetic_bars("AAPL", [dt.date(2023, 6, 15)]).set_index("date")
    assert short.equals(long.loc[short.index])
    assert single.equals(long.loc[single.index])


def test_symbols_differ_and_bars_are_realistic():
    table, payloads = bars(SyntheticProvider(), ["AAPL", "MSFT", "BRK.B"], "2015-01-02", "2024-12-31")
    assert [p.symbol for p in payloads] == ["AAPL", "MSFT", "BRK.B"]
    df = table.to_pandas()
    # NYSE sessions per year 2015..2024: 252 252 251 251 252 253 252 251 250 252
    assert len(df) == 3 * 2516
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["volume"] > 0).all()
    closes = df.pivot(index="session", columns="symbol", values="close")
    assert closes["AAPL"].corr(closes["MSFT"]) < 0.99
    daily = np.log(closes).diff().dropna()
    assert ((daily.std() > 0.005) & (daily.std() < 0.03)).all()  # a random walk, not a line
    assert set(df["source"]) == {"synthetic"}


def test_payloads_are_csv_kept_as_sent():
    _, payloads = bars(SyntheticProvider(), ["IBM"], "2024-01-02", "2024-01-05")
    assert payloads[0].extension == "csv"
    assert payloads[0].body.decode().splitlines()[0] == "symbol,date,open,high,low,close,volume,adj_close,vwap,trades"
    assert len(payloads[0].body.decode().splitlines()) == 1 + 4


@pytest.mark.parametrize(
    "fault, check",
    [
        ("nulls", lambda t: pc.sum(pc.is_null(t["close"])).as_py() == 1),
        ("zeros", lambda t: pc.sum(pc.equal(t["close"], 0)).as_py() == 1 and pc.sum(pc.equal(t["volume"], 0)).as_py() == 1),
        ("ohlc", lambda t: pc.sum(pc.greater(t["low"], t["high"])).as_py() == 1),
        ("duplicates", lambda t: t.num_rows == 3 * 10 + 1),
        ("missing_symbol", lambda t: set(t["symbol"].to_pylist()) == {"AAPL", "MSFT"}),
        ("missing_session", lambda t: len(set(t["session"].to_pylist())) == 9),
    ],
)
def test_each_fault_damages_exactly_what_it_says(fault, check):
    table, _ = bars(SyntheticProvider(faults=(fault,)), ["AAPL", "MSFT", "IBM"], "2024-01-02", "2024-01-16")
    assert check(table)


def test_unknown_fault_and_interval_are_named_errors():
    with pytest.raises(ValueError, match="unknown STOCK_ASSETS_SYNTHETIC_FAULTS"):
        SyntheticProvider(faults=("gremlins",)).fetch(["AAPL"], [dt.date(2024, 1, 2)], "1d")
    with pytest.raises(ValueError, match="daily bars only"):
        SyntheticProvider().fetch(["AAPL"], [dt.date(2024, 1, 2)], "5min")
