"""The synthetic provider: deterministic across ranges, realistic bars, faults with exact counts."""

import dataclasses
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
    assert payloads[0].body.decode().splitlines()[0] == "symbol,date,open,high,low,close,volume,adj_close,vwap,trades,dividend,split_coefficient"
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
    with pytest.raises(ValueError, match="makes 1d and 1min, 5min, 15min, 30min, 60min bars, not '2min'"):
        SyntheticProvider().fetch(["AAPL"], [dt.date(2024, 1, 2)], "2min")


def actions(symbol, first, last):
    df = synthetic_bars(symbol, sessions_between(START, first, last))
    return [(d, "split", r) for d, r in zip(df["date"], df["split_coefficient"]) if r != 1] + [
        (d, "dividend", x) for d, x in zip(df["date"], df["dividend"]) if x > 0
    ]


def test_the_default_universe_splits_and_pays_dividends_with_a_split_in_the_simulated_month():
    found = {s: actions(s, "2023-01-03", "2026-12-31") for s in ["AAPL", "MSFT", "NVDA", "IBM", "AMZN"]}
    splits = sorted((s, d, r) for s, acts in found.items() for d, kind, r in acts if kind == "split")
    assert splits == [("AAPL", "2023-06-26", 2.0), ("AAPL", "2026-10-09", 2.0), ("NVDA", "2025-09-08", 2.0)]  # docs/providers.md
    assert {s: sum(kind == "dividend" for _, kind, _ in acts) for s, acts in found.items()} == {"AAPL": 0, "MSFT": 0, "NVDA": 16, "IBM": 16, "AMZN": 16}
    assert ("2026-10-09", "split", 2.0) in actions("AAPL", "2026-10-05", "2026-11-02")  # test_month's window


def test_a_split_and_a_dividend_move_the_traded_prices_and_say_so():
    aapl = synthetic_bars("AAPL", sessions_between(START, "2026-10-05", "2026-10-16")).set_index("date")
    before, on = aapl.loc["2026-10-08"], aapl.loc["2026-10-09"]
    assert 1.9 < before["close"] / on["close"] < 2.1 and 1.9 < on["open"] and before["close"] / on["open"] < 2.1  # traded prices halve
    assert on["volume"] > 1.5 * before["volume"]  # twice the shares
    assert aapl["split_coefficient"].tolist() == [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert aapl["adj_close"].isna().all() and (aapl["dividend"] == 0).all()  # adj_close is derived downstream
    ibm = synthetic_bars("IBM", sessions_between(START, "2024-01-02", "2024-12-31")).set_index("date")
    paid = ibm[ibm["dividend"] > 0]
    assert len(paid) == 4 and (paid["dividend"] == paid["dividend"].round(2)).all()
    previous = ibm["close"].shift(1).loc[paid.index]
    assert ((paid["dividend"] / previous > 0.0019) & (paid["dividend"] / previous < 0.0081)).all()


def test_actions_are_the_same_whatever_window_is_asked():
    whole = actions("AAPL", "2015-01-02", "2026-12-31")
    assert [a for a in whole if "2023-06-01" <= a[0] <= "2023-07-31"] == actions("AAPL", "2023-06-01", "2023-07-31")
    assert actions("AAPL", "2023-06-26", "2023-06-26") == [("2023-06-26", "split", 2.0)]  # a window starting on the ex-date
    assert [a for a in actions("IBM", "2015-01-02", "2026-12-31") if a[0] >= "2026-01-02"] == actions("IBM", "2026-01-02", "2026-12-31")


def test_a_split_is_excused_and_a_dividend_is_no_jump():
    from stock_assets.settings import Settings
    from stock_assets.transforms.quality_window import jumps

    sessions = sessions_between(START, "2026-08-03", "2026-10-30")
    table, _ = bars(SyntheticProvider(), ["AAPL", "IBM", "NVDA", "AMZN"], "2026-08-03", "2026-10-30")
    assert pc.sum(pc.greater(table["dividend"], 0)).as_py() >= 3 and pc.sum(pc.not_equal(table["split_coefficient"], 1)).as_py() == 1
    threshold = dataclasses.fields(Settings)[[f.name for f in dataclasses.fields(Settings)].index("dq_jump_threshold")].default
    assert all(jumps(table, table.slice(0, 0), sessions, threshold, "deduped_prices")["passed"].to_pylist())
    unexplained = table.set_column(table.schema.get_field_index("split_coefficient"), "split_coefficient", pa.array(np.ones(table.num_rows)))
    failed = jumps(unexplained, table.slice(0, 0), sessions, threshold, "deduped_prices").filter(pc.invert(pc.field("passed")))
    assert [(str(r["session"]), r["sample"]) for r in failed.to_pylist()] == [("2026-10-09", "AAPL@2026-10-09")]  # the split, were it not said
