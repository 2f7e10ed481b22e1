"""PostgreSQL specifics on a real server: a reader during a load sees the old window, a failure
after the delete rolls it back, DuckDB and PostgreSQL hold identical rows, `?` parameters work,
and a password in the URL never shows."""

import datetime as dt

import psycopg2
import pyarrow as pa
import pytest

from stock_assets.transforms.indicators import compute_indicators
from stock_assets.transforms.quality import RULES, evaluate
from stock_assets.warehouse.warehouse import WarehouseConnectionError, WarehouseLoadError, warehouse_for_url
from stock_assets_tests.test_warehouse import FEB, JAN, bars, rows


def test_a_reader_sees_the_old_window_until_the_load_commits(postgres_url):
    warehouse = warehouse_for_url(postgres_url)
    old, new = bars(JAN), bars(JAN, symbols=("IBM",))
    warehouse.replace_window("prices", old, JAN[0], JAN[-1])
    seen = []

    def read_from_a_second_connection():  # the load has deleted and inserted, not committed
        with psycopg2.connect(postgres_url) as reader, reader.cursor() as cur:
            cur.execute("SELECT DISTINCT symbol FROM prices ORDER BY 1")
            seen.append([r[0] for r in cur.fetchall()])
        reader.close()

    warehouse.before_commit = read_from_a_second_connection
    warehouse.replace_window("prices", new, JAN[0], JAN[-1])
    assert seen == [["AAPL", "MSFT"]]
    assert warehouse.query("SELECT DISTINCT symbol FROM prices")["symbol"].to_pylist() == ["IBM"]


def test_a_failure_after_the_delete_rolls_the_window_back(postgres_url):
    warehouse = warehouse_for_url(postgres_url)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    before = rows(warehouse)

    def crash():
        raise ConnectionResetError("network gone")

    warehouse.before_commit = crash
    with pytest.raises(WarehouseLoadError, match=f"prices for sessions {JAN[0]}..{JAN[-1]} failed and was rolled back: network gone"):
        warehouse.replace_window("prices", bars(JAN, symbols=("IBM",)), JAN[0], JAN[-1])
    assert rows(warehouse) == before


@pytest.mark.slow
def test_duckdb_and_postgresql_hold_identical_rows(postgres_url, tmp_path):
    duck, pg = warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}"), warehouse_for_url(postgres_url)
    prices = [(s, bars(s, symbols=("AAPL", "MSFT", "IBM"), faults=("ohlc", "nulls"))) for s in (JAN, FEB)]
    odd = pa.table({
        "session": [JAN[0]] * 5,
        "text": ['a,"b"', "", None, "ünïcödé\nline", "\\N"],
        "value": [0.1 + 0.2, 5e-324, 1.7976931348623157e308, None, -1 / 3],
        "flag": [True, False, None, True, False],
        "at": pa.array([dt.datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=dt.UTC), None, None, None, None], pa.timestamp("us", tz="UTC")),
    })
    for warehouse in (duck, pg):
        for sessions, data in prices:
            warehouse.replace_window("prices", data, sessions[0], sessions[-1])
            warehouse.replace_window("indicators", compute_indicators(data), sessions[0], sessions[-1])
            warehouse.replace_window("dq_report", evaluate(RULES, data, sessions, "deduped_prices"), sessions[0], sessions[-1])
        warehouse.replace_window("oddities", odd, JAN[0], JAN[0])
    for table in ("prices", "indicators", "dq_report", "oddities", "prices_latest", "prices_with_indicators", "dq_failures"):
        assert rows(pg, table) == rows(duck, table), table
    assert len(rows(pg, "prices")) == 3 * (len(JAN) + len(FEB)) and rows(pg, "dq_failures")


def test_query_takes_question_mark_parameters_like_duckdb(postgres_url):
    warehouse = warehouse_for_url(postgres_url)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    result = warehouse.query(
        "SELECT count(*) AS n, '?%' AS literal FROM prices WHERE symbol LIKE 'A%' AND session BETWEEN ? AND ?", [JAN[0], JAN[4]]
    )
    assert result.to_pylist() == [{"n": 5, "literal": "?%"}]
    assert warehouse.query("SELECT * FROM prices WHERE FALSE").schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_each_table_gets_a_session_index(postgres_url):
    warehouse = warehouse_for_url(postgres_url)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    indexes = warehouse.query("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    assert indexes["indexdef"].to_pylist() == [f"CREATE INDEX prices_session_idx ON {postgres_url.rsplit('%3D', 1)[1]}.prices USING btree (session)"]


def test_a_password_never_shows():
    warehouse = warehouse_for_url("postgresql://loader:hunter2-secret@127.0.0.1:1/warehouse")
    assert warehouse.describe() == "postgresql://loader:***@127.0.0.1:1/warehouse"
    with pytest.raises(WarehouseConnectionError) as failed:
        warehouse.query("SELECT 1")
    assert "hunter2" not in str(failed.value) and "loader:***@127.0.0.1:1" in str(failed.value)
    with pytest.raises(ValueError) as bad_scheme:
        warehouse_for_url("mysql://loader:hunter2-secret@db/x")
    assert "hunter2" not in str(bad_scheme.value)
