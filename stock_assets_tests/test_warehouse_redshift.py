"""The Redshift engine end to end on a real PostgreSQL and a real S3 API (moto on loopback):
the manifest it writes to the lake, the COPY it issues, the staging check, delete + insert in
one transaction. PostgreSQL has no COPY from S3, so that one statement is played by reading
the manifest's objects and inserting their rows in file column order, as Redshift does, on the
load's own (psycopg2) connection and transaction."""

import datetime as dt
import json

import psycopg2
import psycopg2.extras
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.restatement import describe_restated, pending, restate, write_actions
from stock_assets.transforms.actions import ACTIONS_SCHEMA, adjust
from stock_assets.transforms.quality import RULES, evaluate
from stock_assets.warehouse import ddl
from stock_assets.warehouse.redshift import RedshiftWarehouse
from stock_assets.warehouse.warehouse import WarehouseLoadError, warehouse_for_url
from stock_assets_tests.test_warehouse import FEB, JAN, as_rows, bars, rows

ROLE = "arn:aws:iam::123456789012:role/stock-assets-copy"


class RedshiftOnPostgres(RedshiftWarehouse):
    """Redshift's SQL on PostgreSQL: tables without DIST/SORT keys, S3 COPY played from the manifest."""

    dialect = "postgresql"
    copies: list[str]

    def _copy(self, cur, statement: str) -> None:
        self.copies.append(statement)
        stage, manifest = statement.split()[1], statement.split("'")[1]
        entries = json.loads(self.lake.fs.open_input_file(manifest.removeprefix("s3://")).read())["entries"]
        for entry in entries:
            f = self.lake.fs.open_input_file(entry["url"].removeprefix("s3://"))
            assert f.size() == entry["meta"]["content_length"]
            rows = [tuple(r.values()) for r in pq.read_table(f).to_pylist()]  # by position, not by name
            psycopg2.extras.execute_values(cur, f"INSERT INTO {stage} VALUES %s", rows)


@pytest.fixture
def lake(s3_lake_url) -> LakeStorage:
    return LakeStorage(s3_lake_url)


@pytest.fixture
def redshift(postgres_url, lake) -> RedshiftOnPostgres:
    engine = RedshiftOnPostgres(postgres_url, lake=lake, iam_role=ROLE)
    engine.copies = []
    return engine


@pytest.mark.slow
def test_prices_load_from_the_lakes_own_files_for_exactly_the_window(redshift, lake):
    data = bars(JAN)
    layout.write_sessions(lake, "lake/deduped", data, JAN)
    layout.write_sessions(lake, "lake/deduped", bars(FEB), FEB)
    assert redshift.replace_window("prices", data, JAN[0], JAN[-1], lake_prefix="lake/deduped") == 42

    manifest = f"warehouse/manifests/prices/{JAN[0]}_{JAN[-1]}.manifest"
    assert redshift.copies == [f"COPY \"prices_stage\" FROM '{lake.uri(manifest)}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST"]
    listed = [e["url"] for e in json.loads(lake.read_bytes(manifest))["entries"]]
    written_in_january = pa.table(delta.open_table(lake, "lake/deduped", 0).get_add_actions(flatten=True))["path"].to_pylist()
    january = [f"{lake.uri('lake/deduped')}/{p}" for p in written_in_january]
    # January's file, not February's: both in year=2024, told apart by their session statistics.
    assert listed == january and len(january) == 1 and len(delta.current_files(lake, "lake/deduped")) == 2
    assert rows(redshift) == as_rows(data)


def test_a_lake_that_disagrees_with_the_asset_rolls_back(redshift, lake):
    layout.write_sessions(lake, "lake/deduped", bars(JAN), JAN)
    redshift.replace_window("prices", bars(JAN), JAN[0], JAN[-1], lake_prefix="lake/deduped")
    before = rows(redshift)
    fewer = bars(JAN).slice(1)
    with pytest.raises(WarehouseLoadError, match=rf"prices for sessions {JAN[0]}..{JAN[-1]} failed .*rows per session \(2024-01-02: 2 staged, 1 expected\)"):
        redshift.replace_window("prices", fewer, JAN[0], JAN[-1], lake_prefix="lake/deduped")
    assert rows(redshift) == before


def test_a_missing_lake_table_is_named(redshift, lake):
    with pytest.raises(WarehouseLoadError, match=r"not in the lake: the Delta table s3://.*/lake/deduped holds no file for the window"):
        redshift.replace_window("prices", bars(JAN), JAN[0], JAN[-1], lake_prefix="lake/deduped")


def test_a_table_loads_from_its_lake_table_or_else_a_staging_file(redshift, lake):
    report = evaluate(RULES, bars(JAN, faults=("zeros",)), JAN, "deduped_prices")
    layout.write_sessions(lake, "lake/dq_report", report, JAN)
    redshift.replace_window("dq_report", report, JAN[0], JAN[-1], lake_prefix="lake/dq_report")
    assert lake.list_files("warehouse/staging") == []  # the lake's own files
    assert rows(redshift, "dq_report") == as_rows(report)
    redshift.replace_window("dq_report", report, JAN[0], JAN[-1])  # rows the lake does not hold: staged
    assert lake.list_files("warehouse/staging/dq_report") == [f"warehouse/staging/dq_report/{JAN[0]}_{JAN[-1]}.parquet"]
    assert rows(redshift, "dq_report") == as_rows(report)
    failing = report.filter(pc.invert(report["passed"])).drop_columns(["passed"])
    assert failing.num_rows and rows(redshift, "dq_failures") == as_rows(failing)


def test_redshift_table_ddl_runs_on_postgresql_without_its_keys(postgres_url):
    create = ddl.create_table_sql("prices", bars(JAN).schema, "redshift")[0]
    layout_clause = ddl.redshift_layout(bars(JAN).schema)
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute(create.removesuffix(layout_clause))
    con.close()
    assert warehouse_for_url(postgres_url).table_exists("prices")


def test_redshift_needs_an_s3_lake_and_a_role(postgres_url, tmp_path):
    local = RedshiftWarehouse(postgres_url, lake=LakeStorage(str(tmp_path)), iam_role=ROLE)
    local.dialect = "postgresql"
    with pytest.raises(WarehouseLoadError, match="needs an s3:// lake .* STOCK_ASSETS_REDSHIFT_IAM_ROLE"):
        local.replace_window("prices", bars(JAN), JAN[0], JAN[-1])


def test_a_redshift_url_goes_through_the_postgresql_driver(lake):
    engine = warehouse_for_url("redshift://loader:pw@cluster.example:5439/dev", lake=lake, redshift_iam_role=ROLE)
    assert isinstance(engine, RedshiftWarehouse) and engine.lake is lake and engine.iam_role == ROLE
    assert engine.dsn() == "postgresql://loader:pw@cluster.example:5439/dev"
    assert engine.describe() == "redshift://loader:***@cluster.example:5439/dev"
    assert pa.types.is_date32(bars(JAN).schema.field("session").type)


def test_prices_carry_their_adj_factor_though_the_lakes_files_have_none(redshift, lake):
    """lake/deduped holds adj_close but not adj_factor: COPYing its files alone left the
    warehouse's adj_factor NULL, so the rows the asset returned are staged instead."""
    data = bars(JAN)
    layout.write_sessions(lake, "lake/deduped", data, JAN)
    split = pa.table({"symbol": ["AAPL"], "ex_date": [JAN[10]], "kind": ["split"], "value": [4.0], "source": ["test"],
                      "first_seen": pa.array([None], pa.timestamp("us", tz="UTC")), "factor": [0.25]}).cast(ACTIONS_SCHEMA)
    priced = adjust(data, split)
    assert "adj_factor" not in delta.open_table(lake, "lake/deduped").schema().to_arrow().names
    redshift.replace_window("prices", priced, JAN[0], JAN[-1], lake_prefix="lake/deduped")
    factors = redshift.query("SELECT symbol, session, adj_factor FROM prices ORDER BY symbol, session")
    assert factors["adj_factor"].null_count == 0
    assert factors.to_pylist() == priced.select(["symbol", "session", "adj_factor"]).sort_by([("symbol", "ascending"), ("session", "ascending")]).to_pylist()
    assert rows(redshift) == as_rows(priced)
    assert lake.list_files("warehouse/staging/prices") == [f"warehouse/staging/prices/{JAN[0]}_{JAN[-1]}.parquet"]


@pytest.mark.slow
def test_a_restatement_on_redshift_equals_the_same_on_duckdb(redshift, lake, tmp_path):
    """A 4:1 split of AAPL known after its sessions loaded: Redshift's prices (adjusted columns and
    adj_factor), indicators and corporate_actions equal DuckDB's, MSFT's rows are untouched."""
    data = bars(JAN)
    duck = warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
    layout.write_sessions(lake, "lake/deduped", data, JAN)
    loaded = adjust(data, ACTIONS_SCHEMA.empty_table())
    for store in (redshift, duck):
        store.replace_window("prices", loaded, JAN[0], JAN[-1], lake_prefix="lake/deduped")
    msft_before = rows(redshift, where="symbol = 'MSFT'")
    split = pa.table({"symbol": ["AAPL"], "ex_date": [JAN[10]], "kind": ["split"], "value": [4.0], "source": ["test"],
                      "first_seen": pa.array([dt.datetime(2024, 2, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")), "factor": [0.25]})
    write_actions(lake, split.cast(ACTIONS_SCHEMA), ["AAPL"])
    assert pending(lake, redshift).num_rows == 1
    when = dt.datetime(2024, 2, 1, 22, tzinfo=dt.UTC)
    said = restate(lake, redshift, ["AAPL"], [], "run-1", when)
    assert [describe_restated(s) for s in said] == [f"AAPL: 4:1 split on {JAN[10]} — 10 earlier sessions restated, indicators recomputed"]
    restate(lake, duck, ["AAPL"], [], "run-1", when)
    assert pending(lake, redshift).num_rows == 0
    for table in ("prices", "indicators", "corporate_actions"):
        assert rows(redshift, table) == rows(duck, table), table
    aapl = redshift.query("SELECT close, adj_close, adj_factor FROM prices WHERE symbol = 'AAPL' ORDER BY session")
    assert aapl["adj_factor"].to_pylist() == [0.25] * 10 + [1.0] * (len(JAN) - 10)
    assert aapl["adj_close"].to_pylist() == pc.multiply(aapl["close"], aapl["adj_factor"]).to_pylist()
    assert rows(redshift, where="symbol = 'MSFT'") == msft_before
