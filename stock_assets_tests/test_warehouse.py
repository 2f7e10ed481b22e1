"""The warehouse on a real DuckDB file: window loads are transactional, idempotent and evolve."""


import pyarrow as pa
import pytest

from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.warehouse.warehouse import WarehouseLoadError, warehouse_for_url

JAN = sessions_between("2015-01-02", "2024-01-02", "2024-01-31")
FEB = sessions_between("2015-01-02", "2024-02-01", "2024-02-09")


def bars(sessions) -> pa.Table:
    provider = SyntheticProvider()
    return pa.concat_tables([parse_synthetic(p) for p in provider.fetch(["AAPL", "MSFT"], sessions, "1d").payloads])


@pytest.fixture
def warehouse(tmp_path):
    return warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}")


def count(warehouse, where="TRUE") -> int:
    return warehouse.query(f"SELECT count(*) AS n FROM prices WHERE {where}")["n"][0].as_py()


def test_reloading_a_window_replaces_it(warehouse):
    assert warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1]) == 42
    first = warehouse.query("SELECT * FROM prices ORDER BY ALL")
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    assert count(warehouse) == 42
    assert warehouse.query("SELECT * EXCLUDE (ingested_at) FROM prices ORDER BY ALL").equals(first.drop_columns(["ingested_at"]))


def test_a_second_window_leaves_the_first_untouched(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    january = warehouse.query("SELECT * FROM prices ORDER BY ALL")
    warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1])
    assert warehouse.query(f"SELECT * FROM prices WHERE session <= '{JAN[-1]}' ORDER BY ALL").equals(january)
    assert count(warehouse, f"session >= '{FEB[0]}'") == 14


def test_a_failed_load_rolls_back_and_names_the_window(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    broken = bars(JAN).set_column(9, "volume", pa.array(["many"] * 42))  # text into BIGINT
    with pytest.raises(WarehouseLoadError, match=f"prices for sessions {JAN[0]}..{JAN[-1]}"):
        warehouse.replace_window("prices", broken, JAN[0], JAN[-1])
    assert count(warehouse) == 42  # the old window survived


def test_a_new_nullable_column_is_added_without_losing_rows(warehouse):
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    wider = bars(FEB)
    wider = wider.append_column("exchange", pa.array(["XNYS"] * wider.num_rows))
    warehouse.replace_window("prices", wider, FEB[0], FEB[-1])
    result = warehouse.query("SELECT count(*) AS n, count(exchange) AS filled FROM prices")
    assert result.to_pylist() == [{"n": 56, "filled": 14}]


def test_unknown_warehouse_url_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported warehouse URL scheme 'mysql'"):
        warehouse_for_url("mysql://localhost/x")
