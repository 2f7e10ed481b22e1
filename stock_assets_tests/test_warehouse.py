"""The warehouse engines on real databases — a DuckDB file and a PostgreSQL schema of the test's
own: window loads are transactional, idempotent, exact, evolve, and feed the dashboard views."""

import datetime as dt
import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.transforms.indicators import compute_indicators
from stock_assets.transforms.quality import RULES, evaluate
from stock_assets.warehouse.warehouse import WarehouseLoadError, warehouse_for_url

JAN = sessions_between("2015-01-02", "2024-01-02", "2024-01-31")
FEB = sessions_between("2015-01-02", "2024-02-01", "2024-02-09")


def bars(sessions, symbols=("AAPL", "MSFT"), faults=()) -> pa.Table:
    provider = SyntheticProvider(faults=faults)
    return pa.concat_tables([parse_synthetic(p) for p in provider.fetch(list(symbols), sessions, "1d").payloads])


def rows(warehouse, table: str = "prices", where: str = "TRUE", drop: tuple[str, ...] = ()) -> list[tuple]:
    """Every row as an ordered tuple, sorted: engine-neutral, and floats compare exactly."""
    return as_rows(warehouse.query(f"SELECT * FROM {table} WHERE {where}").drop_columns(list(drop)))


def as_rows(data: pa.Table) -> list[tuple]:
    """Sorted tuples; NaN becomes "NaN" so that equal rows compare equal (NaN != NaN)."""
    tuples = [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r.values()) for r in data.to_pylist()]
    return sorted(tuples, key=lambda r: [(v is None, isinstance(v, str), 0 if v is None else v) for v in r])


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        return warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
    return warehouse_for_url(request.getfixturevalue("postgres_url"))


def test_a_range_loads_exactly_what_was_given(warehouse):
    data = bars(JAN)
    assert warehouse.replace_window("prices", data, JAN[0], JAN[-1]) == 42
    assert rows(warehouse) == as_rows(data)


def test_reloading_a_window_replaces_it(warehouse):
    data = bars(JAN)
    warehouse.replace_window("prices", data, JAN[0], JAN[-1])
    first = rows(warehouse)
    warehouse.replace_window("prices", data, JAN[0], JAN[-1])
    assert rows(warehouse) == first
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])  # a new fetch: only ingested_at moves
    assert rows(warehouse, drop=("ingested_at",)) == as_rows(data.drop_columns(["ingested_at"]))


def test_a_second_window_leaves_the_first_untouched(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    january = rows(warehouse)
    warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1])
    assert rows(warehouse, where=f"session <= '{JAN[-1]}'") == january
    assert len(rows(warehouse, where=f"session >= '{FEB[0]}'")) == 14


def test_a_failed_load_rolls_back_and_names_the_window(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    before = rows(warehouse)
    broken = bars(JAN).set_column(9, "volume", pa.array(["many"] * 42))  # text into BIGINT
    with pytest.raises(WarehouseLoadError, match=f"prices for sessions {JAN[0]}..{JAN[-1]}"):
        warehouse.replace_window("prices", broken, JAN[0], JAN[-1])
    assert rows(warehouse) == before  # the old window survived


def test_rows_outside_the_window_are_refused(warehouse):
    with pytest.raises(WarehouseLoadError, match="rows hold sessions 2024-01-02..2024-01-31, outside the window"):
        warehouse.replace_window("prices", bars(JAN), JAN[1], JAN[-1])
    assert not warehouse.table_exists("prices")


def test_a_new_nullable_column_is_added_without_losing_rows(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    january = rows(warehouse)
    wider = bars(FEB)
    wider = wider.append_column("exchange", pa.array(["XNYS"] * wider.num_rows))
    warehouse.replace_window("prices", wider, FEB[0], FEB[-1])
    result = warehouse.query("SELECT count(*) AS n, count(exchange) AS filled FROM prices")
    assert result.to_pylist() == [{"n": 56, "filled": 14}]
    assert rows(warehouse, where=f"session <= '{JAN[-1]}'") == [r + (None,) for r in january]
    latest = warehouse.query("SELECT exchange FROM prices_latest")  # the view follows the table
    assert latest["exchange"].to_pylist() == ["XNYS", "XNYS"]


def test_the_dashboard_views_answer_from_the_tables(warehouse):
    prices = bars(JAN, faults=("ohlc",))
    warehouse.replace_window("prices", prices, JAN[0], JAN[-1])
    assert not warehouse.table_exists("prices_with_indicators")  # until indicators exist
    warehouse.replace_window("indicators", compute_indicators(prices), JAN[0], JAN[-1])
    report = evaluate(RULES, prices, JAN, "deduped_prices")
    warehouse.replace_window("dq_report", report, JAN[0], JAN[-1])

    latest = warehouse.query("SELECT symbol, session, close FROM prices_latest ORDER BY symbol")
    last = prices.filter(pc.equal(prices["session"], JAN[-1])).sort_by("symbol")
    assert latest.to_pylist() == last.select(["symbol", "session", "close"]).to_pylist()

    failures = warehouse.query("SELECT session, check_name, observed FROM dq_failures")
    assert failures.to_pylist() == [{"session": JAN[-1], "check_name": "prices_ohlc_consistent", "observed": 1.0}]

    joined = warehouse.query("SELECT symbol, session, close, sma_7 FROM prices_with_indicators WHERE sma_7 IS NOT NULL")
    assert joined.num_rows == 2 * (len(JAN) - 6)
    assert set(warehouse.query("SELECT * FROM prices_with_indicators").column_names) >= {"close", "sma_30", "pct_change"}


def test_every_view_is_there_once_its_tables_are(warehouse):
    for table in ("dq_report", "indicators", "prices"):
        assert not warehouse.table_exists(table)
    warehouse.replace_window("dq_report", evaluate(RULES, bars(JAN), JAN, "deduped_prices"), JAN[0], JAN[-1])
    assert warehouse.table_exists("dq_failures") and not warehouse.table_exists("prices_latest")
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    warehouse.replace_window("indicators", compute_indicators(bars(JAN)), JAN[0], JAN[-1])
    assert all(warehouse.table_exists(v) for v in ("prices_latest", "prices_with_indicators", "dq_failures"))


def test_an_empty_window_empties_the_window(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    assert warehouse.replace_window("prices", bars(JAN).slice(0, 0), dt.date(2024, 1, 2), dt.date(2024, 1, 5)) == 0
    assert len(rows(warehouse)) == 42 - 2 * 4
    assert rows(warehouse, where="session < '2024-01-08'") == []


def test_unknown_warehouse_url_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported warehouse URL scheme 'mysql'"):
        warehouse_for_url("mysql://localhost/x")
