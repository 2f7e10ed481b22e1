"""The whole graph with STOCK_ASSETS_WAREHOUSE_URL=postgresql://… (a schema of the test's own)
gives the same warehouse tables as with DuckDB, and a re-run changes nothing."""

import dataclasses

import pytest

from stock_assets.cli import materialize_range
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.conftest import defs_for
from stock_assets_tests.test_warehouse import rows

pytestmark = pytest.mark.slow

FIRST, LAST = "2024-01-02", "2024-01-31"
# What differs between two runs by design: when bars were fetched and checks were run.
VOLATILE = {"prices": ("ingested_at",), "indicators": (), "dq_report": ("run_id", "checked_at")}


def tables(warehouse) -> dict[str, list[tuple]]:
    return {t: rows(warehouse, t, drop=drop) for t, drop in VOLATILE.items()}


def test_postgresql_and_duckdb_warehouses_hold_the_same_tables(settings, instance, postgres_url, tmp_path):
    on_postgres = dataclasses.replace(settings, warehouse_url=postgres_url, lake_url=str(tmp_path / "lake_pg"))
    assert materialize_range(defs_for(settings), FIRST, LAST, instance).success
    assert materialize_range(defs_for(on_postgres), FIRST, LAST, instance).success

    duck, postgres = warehouse_for_url(settings.warehouse_url), warehouse_for_url(postgres_url)
    expected = tables(duck)
    assert len(expected["prices"]) == 63 and len(expected["indicators"]) == 63 and expected["dq_report"]
    assert tables(postgres) == expected

    assert materialize_range(defs_for(on_postgres), FIRST, LAST, instance).success
    assert tables(postgres) == expected
    assert rows(postgres, "prices_latest", drop=("ingested_at",)) == rows(duck, "prices_latest", drop=("ingested_at",))
