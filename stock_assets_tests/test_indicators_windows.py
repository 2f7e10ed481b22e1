"""Partitioned = full history: three years of synthetic prices in a real DuckDB warehouse, the
indicators of every window of 1, 5 and 60 sessions computed the way the asset does (from a
bounded lookback), against one computation over the whole history. Windows whose lookback
reaches a symbol's first bar are exact; later ones agree within 1e-9 relative (or 1e-10
absolute near zero). A short lookback does not, the rows read per window do not grow with
history, and the asset itself, run by Dagster on a deep warehouse, stores the same values."""

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets.calendar import session_offset
from stock_assets.cli import materialize_range
from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.transforms.indicators import LOOKBACK_SESSIONS, VALUES, compute_indicators, indicators_for_window
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.test_dashboard import defs_with_reports

START = "2012-01-03"  # the suite's calendar (conftest)
SESSIONS = sessions_between(START, "2021-01-04", "2023-12-29")  # three years
LATE_LISTING = ("NEWCO", SESSIONS[250])  # a symbol whose history starts a year in


def synthetic_prices(symbols, sessions) -> pa.Table:
    payloads = SyntheticProvider().fetch(list(symbols), sessions, "1d").payloads
    return pa.concat_tables([parse_synthetic(p) for p in payloads])


class OneConnection:
    """The warehouse's DuckDB file through one read-only connection: the same SQL and data as
    DuckDBWarehouse.query, without its connect per query (22 ms; 2,000 windows are read here)."""

    def __init__(self, path: str):
        self.con = duckdb.connect(path, read_only=True)
        self.con.execute("SET TimeZone = 'UTC'")
        self.rows_read = []

    def query(self, sql, params=None):
        result = self.con.sql(sql, params=params).to_arrow_table()
        self.rows_read.append(result.num_rows)
        return result


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("windows") / "w.duckdb"
    prices = pa.concat_tables([
        synthetic_prices(("AAPL", "MSFT", "IBM", "NVDA", "AMZN"), SESSIONS),
        synthetic_prices(LATE_LISTING[:1], [s for s in SESSIONS if s >= LATE_LISTING[1]]),
    ])  # fmt: skip
    warehouse_for_url(f"duckdb:///{path}").replace_window("prices", prices, SESSIONS[0], SESSIONS[-1])
    reader = OneConnection(str(path))
    bars = reader.query("SELECT * FROM prices")
    full = compute_indicators(bars)
    ordered = bars.sort_by([("symbol", "ascending"), ("interval", "ascending"), ("ts", "ascending")])
    price = pc.coalesce(ordered["adj_close"], ordered["close"]).to_numpy()
    yield reader, full, price
    reader.con.close()


def windowed(warehouse, size: int, lookback: int = LOOKBACK_SESSIONS, windows=None) -> tuple[pa.Table, np.ndarray]:
    """Every window's rows, in full-history order, and whether its lookback reached the first bar."""
    parts, exact = [], []
    starts = windows if windows is not None else range(0, len(SESSIONS), size)
    for i in starts:
        window = SESSIONS[i : i + size]
        values, since = indicators_for_window(warehouse, window[0], window[-1], lookback)
        parts.append(values)
        first_bar = np.where(pc.equal(values["symbol"], LATE_LISTING[0]).to_numpy(zero_copy_only=False), LATE_LISTING[1], SESSIONS[0])
        exact.append(since <= first_bar)
    order = pa.concat_tables(parts).append_column("exact", pa.array(np.concatenate(exact)))
    order = order.sort_by([("symbol", "ascending"), ("interval", "ascending"), ("ts", "ascending")])
    return order.drop_columns(["exact"]), order["exact"].to_numpy()


PRICE_UNITS = {"sma_7", "sma_20", "sma_30", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal",
               "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14"}  # fmt: skip


def errors(got: pa.Table, full: pa.Table, price: np.ndarray, names=VALUES) -> dict[str, float]:
    """Per column, the worst |got - full| / max(|full|, scale): relative, and absolute near zero on
    the quantity's own scale: the bar's price for price-denominated columns (MACD is a difference
    of two prices: its rounding is a few ulps of the price, not of itself), 1 for ratios."""
    worst = {}
    for name in names:
        a, b = (t[name].to_numpy(zero_copy_only=False).astype(float) for t in (got, full))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}: NULL where the other is not")
        both, scale = ~np.isnan(b), price if name in PRICE_UNITS else np.ones_like(price)
        worst[name] = float(np.max(np.abs(a - b)[both] / np.maximum(np.abs(b), scale)[both], initial=0.0))
    return worst


@pytest.mark.parametrize("size", [1, 5, 60])
def test_every_partitioning_of_three_years_equals_the_full_history(history, size):
    warehouse, full, price = history
    got, exact = windowed(warehouse, size)
    assert got.select(["symbol", "ts"]).equals(full.select(["symbol", "ts"]))  # every bar once, none missing
    assert got.filter(pa.array(exact)).equals(full.filter(pa.array(exact)))  # early windows: bit for bit
    late = errors(got.filter(pa.array(~exact)), full.filter(pa.array(~exact)), price[~exact])
    print(f"windows of {size}: {exact.sum()} rows exact, worst relative error of the rest {max(late.values()):.1e}")
    assert max(late.values()) < 1e-9, late
    assert exact.sum() and (~exact).sum()  # both kinds of window were exercised


def test_a_short_lookback_would_be_wrong_so_the_comparison_can_fail(history):
    warehouse, full, price = history
    got, _ = windowed(warehouse, 5, lookback=60, windows=range(500, 700, 5))
    rows = pc.is_in(full["session"], got["session"].unique())
    full, price = full.filter(rows), price[rows.to_numpy(zero_copy_only=False)]
    assert got.select(["symbol", "ts"]).equals(full.select(["symbol", "ts"]))
    assert got["sma_200"].null_count == got.num_rows  # 65 bars cannot make a 200-bar average
    names = ("ema_26", "rsi_14", "atr_14")  # seeded 60 bars back: off by far more than 1e-9
    assert all(e > 1e-6 for e in errors(got, full, price, names).values())


def test_the_rows_read_per_window_do_not_grow_with_history(history):
    warehouse = history[0]
    warehouse.rows_read.clear()
    for i in (660, 700, len(SESSIONS) - 1):  # 660 to 752 sessions of history behind the window
        indicators_for_window(warehouse, SESSIONS[i], SESSIONS[i])
    assert warehouse.rows_read == [(LOOKBACK_SESSIONS + 1) * 6] * 3


@pytest.mark.slow
def test_the_asset_run_by_dagster_on_a_deep_warehouse_stores_the_full_history_values(settings, instance):
    before = sessions_between(START, "2022-06-01", "2024-01-31")  # deeper than the lookback
    warehouse = warehouse_for_url(settings.warehouse_url)
    warehouse.replace_window("prices", synthetic_prices(settings.symbols, before), before[0], before[-1])
    defs = defs_with_reports(settings)
    for first, last in (("2024-02-01", "2024-02-07"), ("2024-02-08", "2024-02-08")):
        result = materialize_range(defs, first, last, instance)
        assert result.success
        event = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "indicators")
        since = session_offset(dt.date.fromisoformat(first), -LOOKBACK_SESSIONS)
        assert event.step_materialization_data.materialization.metadata["lookback_from"].value == str(since)
    # (A symbol whose dividend falls in February also has its earlier indicators restated: test_restatement.py.)
    stored = warehouse.query("SELECT * FROM indicators WHERE session >= '2024-02-01' ORDER BY symbol, interval, ts")
    full = compute_indicators(warehouse.query("SELECT * FROM prices"))
    full = full.filter(pc.greater_equal(full["session"], pa.scalar(dt.date(2024, 2, 1), pa.date32())))
    price = warehouse.query(
        "SELECT coalesce(adj_close, close) AS p FROM prices WHERE session >= '2024-02-01' ORDER BY symbol, interval, ts")
    assert stored.num_rows == full.num_rows == 6 * 3
    assert max(errors(stored, full, price["p"].to_numpy()).values()) < 1e-9
