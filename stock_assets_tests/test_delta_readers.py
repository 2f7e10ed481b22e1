"""Readers read Delta as Delta: a re-run leaves the files it superseded in a table's folder until
vacuum, so a glob over the folder counts a window once per run (and past a checkpoint reads the
log's own Parquet). The reads the docs show go through the log; this runs them for real."""

import dataclasses
import re
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from stock_assets.cli import materialize_range
from stock_assets.warehouse.duckdb_engine import DuckDBWarehouse
from stock_assets.warehouse.warehouse import WarehouseLockedError
from stock_assets_tests.conftest import ROOT, defs_for
from stock_assets_tests.test_warehouse import JAN, bars
from stock_assets_tests.test_warehouse_locks import hold_duckdb  # noqa: F401 - a fixture

FIRST, LAST = "2024-01-02", "2024-01-31"  # 21 sessions of 3 symbols: 63 bars
# A query that reads a table's folder instead of its log: read_parquet of a glob, *.parquet, /*/*.
GLOB = re.compile(r"""read_parquet\(\s*['"][^'"]*\*|\*\.parquet|/\*/\*""")
DOCS = ("README.md", "docs/operations.md")


@pytest.fixture
def lake_after_two_runs(settings, instance, tmp_path, monkeypatch) -> tuple[Path, int]:
    """The window run twice into ./.stock_assets, as the docs' paths expect; the rows it holds."""
    home = tmp_path / ".stock_assets"
    settings = dataclasses.replace(settings, home=home, lake_url=str(home / "lake"), warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}")
    defs = defs_for(settings)
    for _ in range(2):
        assert materialize_range(defs, FIRST, LAST, instance).success
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM prices").fetchone()[0]
    monkeypatch.chdir(tmp_path)
    return home, rows


def python_blocks(relpath: str) -> list[str]:
    """The doc's Python code blocks that read the lake."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / relpath).read_text(), re.DOTALL)
    return [b for b in blocks if "deltalake" in b or "stock_assets.lake" in b]


@pytest.mark.slow
def test_the_docs_reads_count_each_row_once_where_a_folder_glob_counts_a_rerun_twice(lake_after_two_runs, capsys):
    home, rows = lake_after_two_runs
    glob = f"SELECT count(*) FROM read_parquet('{home}/lake/lake/deduped/*/*.parquet', hive_partitioning=true)"
    assert (rows, duckdb.sql(glob).fetchall()[0][0]) == (63, 126)  # what the docs recommended: every superseded file too
    DeltaTable(str(home / "lake/lake/deduped")).create_checkpoint()
    with pytest.raises(duckdb.Error):  # and _delta_log/*.checkpoint.parquet matches */*.parquet
        duckdb.sql(glob).fetchall()

    blocks = [(doc, block) for doc in DOCS for block in python_blocks(doc)]
    assert len(blocks) >= 2
    names: dict = {}
    for doc, block in blocks:  # in order, sharing names, as a reader pastes them into one session
        exec(compile(block, doc, "exec"), names)  # noqa: S102 - the docs' own code, run as written
    assert names["production"]["version"] == 1  # the second run's version is production
    assert names["published"].count_rows() == names["current"].count_rows() == names["newest"].count_rows() == rows
    printed = capsys.readouterr().out  # DuckDB over the published version: each symbol's bars once
    assert all(re.search(rf"{symbol}\s*│\s*{rows // 3}\s*│", printed) for symbol in ("AAPL", "IBM", "MSFT")), printed
    assert len(names["frame"]) == rows // 3 and set(names["frame"]["symbol"]) == {"AAPL"}
    window = names["window"]
    assert window.num_rows == rows and len(set(zip(window["symbol"].to_pylist(), window["session"].to_pylist()))) == rows


def test_no_doc_or_error_message_globs_a_table_folder():
    places = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    places += [p for top in ("stock_assets", "deploy", "grafana") for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in places
            for n, line in enumerate(p.read_text(errors="ignore").splitlines(), 1) if GLOB.search(line)]  # fmt: skip
    assert hits == []


def test_the_lock_message_points_at_the_delta_tables_not_their_files(tmp_path, hold_duckdb):  # noqa: F811
    path = tmp_path / "warehouse.duckdb"
    DuckDBWarehouse(path).replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    hold_duckdb(path, 60)
    with pytest.raises(WarehouseLockedError) as locked:
        DuckDBWarehouse(path, lock_timeout_seconds=0).query("SELECT count(*) FROM prices")
    message = str(locked.value)
    assert "the lake's Delta tables through their log (DuckDB's delta_scan, or deltalake's DeltaTable" in message
    assert "Parquet" not in message
