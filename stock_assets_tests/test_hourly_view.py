"""The hourly view: STOCK_ASSETS_INTERVAL=60min and seven sessions give hourly bars end to end
with the synthetic provider (lake, warehouse, indicators, checks, dashboard), as `make run
SESSIONS=7` does; and the rules that must not assume one bar a session: a bar's end is the
close when the close comes first, a split explains the first bar of its ex-date only, a dividend
is measured against the last close of the session before, volatility is annualized per bar."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from stock_assets.calendar import session_bounds
from stock_assets.lake.storage import LakeStorage
from stock_assets.restatement import closes_before
from stock_assets.transforms.actions import ACTIONS_SCHEMA, with_factors
from stock_assets.transforms.indicators import compute_indicators
from stock_assets.transforms.quality_window import jumps, partial_bars

UTC = dt.UTC
BAR_COLUMNS = ["symbol", "session", "ts", "interval", "close", "adj_close", "split_coefficient", "ingested_at"]


def hourly(symbol: str, session: dt.date, closes: list[float], coefficient: float = 1.0, ingested_at: dt.datetime | None = None) -> pa.Table:
    """One session's 60min bars aligned on the open (09:30, 10:30, …), as every provider stamps them."""
    opened = session_bounds(session)[0]
    n = len(closes)
    return pa.table({
        "symbol": [symbol] * n, "session": pa.array([session] * n, pa.date32()),
        "ts": pa.array([opened + dt.timedelta(hours=k) for k in range(n)], pa.timestamp("us", tz="UTC")),
        "interval": ["60min"] * n, "close": pa.array(closes, pa.float64()), "adj_close": pa.nulls(n, pa.float64()),
        "split_coefficient": pa.array([coefficient] * n, pa.float64()),
        "ingested_at": pa.array([ingested_at or opened + dt.timedelta(days=1)] * n, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip


def failing(report: pa.Table) -> dict[dt.date, float]:
    return {r["session"]: r["observed"] for r in report.to_pylist() if not r["passed"]}


def test_the_last_hourly_bar_ends_at_the_close_not_an_hour_after_its_start():
    regular, early = dt.date(2024, 3, 1), dt.date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00
    closes = {s: session_bounds(s)[1] for s in (regular, early)}
    after_close = pa.concat_tables([hourly("AAPL", regular, [100.0] * 7, ingested_at=closes[regular] + dt.timedelta(minutes=5)),
                                    hourly("AAPL", early, [100.0] * 4, ingested_at=closes[early] + dt.timedelta(minutes=5))])  # fmt: skip
    assert failing(partial_bars(after_close, [regular, early], closes, "deduped_prices")) == {}
    before_close = hourly("AAPL", regular, [100.0] * 7, ingested_at=closes[regular] - dt.timedelta(minutes=1))
    assert failing(partial_bars(before_close, [regular], closes, "deduped_prices")) == {regular: 1}  # the 15:30 bar only


@pytest.mark.parametrize("in_order", [True, False], ids=["numpy", "duckdb"])
def test_a_split_explains_the_first_hourly_bar_of_its_ex_date_only(in_order):
    before, ex_date = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    previous = hourly("AAPL", before, [100.0, 100.5, 101.0, 100.8, 101.2, 101.0, 100.9])
    split = hourly("AAPL", ex_date, [50.6, 50.7, 50.5, 50.9, 50.8, 51.0, 51.1], coefficient=2.0)  # 2:1, every bar of the day says so
    window = split if in_order else split.take(list(range(6, -1, -1)))
    assert failing(jumps(window, previous, [ex_date], 0.25, "deduped_prices")) == {}
    jumped = hourly("AAPL", ex_date, [50.6, 50.7, 75.0, 75.2, 75.1, 75.0, 75.3], coefficient=2.0)  # +48 % at 11:30: no split explains that
    window = jumped if in_order else jumped.take(list(range(6, -1, -1)))
    assert failing(jumps(window, previous, [ex_date], 0.25, "deduped_prices")) == {ex_date: 1}


def test_a_dividend_is_measured_against_the_last_hourly_close_of_the_session_before(tmp_path):
    before, ex_date = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    window = pa.concat_tables([hourly("MSFT", before, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 110.0]), hourly("MSFT", ex_date, [109.0] * 7)])
    dividend = pa.Table.from_pylist([dict(symbol="MSFT", ex_date=ex_date, kind="dividend", value=1.1, source="synthetic",
                                          first_seen=dt.datetime(2024, 3, 5, tzinfo=UTC), factor=None)], schema=ACTIONS_SCHEMA)  # fmt: skip
    [action] = with_factors(dividend, closes_before(LakeStorage(str(tmp_path / "lake")), dividend, window)).to_pylist()
    assert action["factor"] == pytest.approx(1 - 1.1 / 110.0, rel=1e-15)  # the 15:30 bar's close: the session's close


def test_hourly_volatility_is_annualized_by_the_bars_of_a_year():
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 70)))
    sessions = [dt.date(2024, 3, 1) + dt.timedelta(days=d) for d in range(14)]
    sessions = [s for s in sessions if s.weekday() < 5][:10]
    bars = pa.concat_tables([hourly("IBM", s, list(close[7 * i:7 * i + 7])) for i, s in enumerate(sessions)])
    bars = bars.append_column("high", bars["close"]).append_column("low", bars["close"])
    got = compute_indicators(bars)["volatility_20"].to_numpy(zero_copy_only=False)
    log_return = np.diff(np.log(close))
    expected = np.std(log_return[-20:], ddof=1) * np.sqrt(252 * 7)
    assert got[-1] == pytest.approx(expected, rel=1e-12)
