"""Ours on the peers' input: the data path as plain functions (benchmarks/datapath.py's stages,
the way an in-process run executes them) from the csvdir files into the lake (a local folder, or
S3 when STOCK_ASSETS_LAKE_URL says so) and the DuckDB warehouse; then the two queries from the
lake or from the warehouse. Runs in the product's environment, with child_env's settings.

    read       every daily/<SYMBOL>.csv with pyarrow (a thread pool), conformed to BAR_SCHEMA
               (symbol from the file name, session and ts from the date, split -> split_coefficient)
    landing    landing/<session>/*.csv + records, one per session (the audit copy), handed on
    lake       lake/prices (the lake's typed layer: whatever layout stock_assets.lake.layout writes)
    dedup      lake/deduped
    checks     every check over the window, lake/dq_report and the warehouse's dq_report
    warehouse  the window into the warehouse's prices table

Not run: raw (the input files are the raw payloads), indicators, publish and the dashboard: no
peer computes anything beyond storing the bars.
"""

import datetime as dt
import time

from benchmarks.peers.child import main, time_queries

STAGES = ("landing", "lake", "dedup", "checks", "warehouse")
COLUMNS = ["symbol", "session", "open", "high", "low", "close", "volume"]


def imports() -> None:
    import pyarrow.csv
    import pyarrow.dataset  # noqa: F401

    import benchmarks.adapters
    import benchmarks.datapath  # noqa: F401
    import stock_assets.lake.handoff
    import stock_assets.transforms.accounting
    import stock_assets.transforms.quality_run
    import stock_assets.warehouse.warehouse  # noqa: F401


def read_csvdir(input: str, max_workers: int) -> "pa.Table":  # noqa: F821
    """The csvdir files as canonical bars (what a csvdir provider would hand to landing)."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from stock_assets.calendar import NY
    from stock_assets.schema import conform, constant

    types = {"date": pa.date32(), "open": pa.float64(), "high": pa.float64(), "low": pa.float64(), "close": pa.float64(),
             "volume": pa.int64(), "dividend": pa.float64(), "split": pa.float64()}
    options = pacsv.ConvertOptions(column_types=types)
    ingested_at = dt.datetime.now(dt.UTC)

    def read(path: Path) -> pa.Table:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False), convert_options=options)
        n = table.num_rows
        table = table.rename_columns(["split_coefficient" if c == "split" else c for c in table.column_names])
        return table.append_column("symbol", constant(path.stem, pa.string(), n)).append_column("session", table["date"])

    paths = sorted(Path(input, "daily").glob("*.csv"))
    with ThreadPoolExecutor(max_workers) as pool:
        table = pa.concat_tables(pool.map(read, paths))
    n = table.num_rows
    table = table.append_column("ts", pc.assume_timezone(pc.cast(table["date"], pa.timestamp("us")), timezone=NY))
    for column, value, kind in (("interval", "1d", pa.string()), ("source", "csvdir", pa.string()),
                                ("ingested_at", ingested_at, pa.timestamp("us", tz="UTC"))):
        table = table.append_column(column, constant(value, kind, n))
    return conform(table)


def ingest(input: str, first: str, last: str, **_) -> dict:
    import os

    from benchmarks import datapath
    from benchmarks.common import peak_rss_mib
    from stock_assets.lake.handoff import Handoff
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.partitions import sessions_between
    from stock_assets.settings import Settings
    from stock_assets.transforms.accounting import sort_window_bars
    from stock_assets.warehouse.warehouse import warehouse_for_url

    settings = Settings.from_env()
    sessions = sessions_between(settings.start, first, last)
    ctx = datapath.Ctx(LakeStorage(settings.lake_url), warehouse_for_url(settings.warehouse_url), sessions, list(settings.symbols),
                       settings.dq_jump_threshold, settings.home, handoff=Handoff())
    stages = []

    def timed(name, fn):
        started = time.perf_counter()
        rows = fn()
        stages.append({"stage": name, "seconds": time.perf_counter() - started, "rows": rows, "peak_rss_mib": round(peak_rss_mib(), 1)})

    bars = None

    def read():
        nonlocal bars
        bars = read_csvdir(input, (os.cpu_count() or 1) + 2)
        return bars.num_rows

    def landing():
        nonlocal bars
        window = sort_window_bars(bars, sessions).landed  # as landing_csv takes the window's bars (no copy when all are)
        bars = None  # as a run lets go of an output once it is stored
        ctx.store("landing", window)
        return window.num_rows

    timed("read", read)
    timed("landing", landing)
    for stage in STAGES[1:]:
        timed(stage, lambda stage=stage: getattr(datapath, f"stage_{stage}")(ctx))
    failed = ctx.warehouse.query("SELECT check_name, severity, count(*) AS sessions FROM dq_report WHERE NOT passed GROUP BY ALL ORDER BY ALL")
    return {"stages": stages, "sessions": len(sessions), "symbols": len(ctx.symbols), "lake_url": settings.lake_url,
            "lake_layout": layout_name(ctx.storage),
            "checks_failed": failed.to_pylist()}


def lake_dataset(storage, prefix: str):
    """A lake table as one pyarrow dataset, whatever its layout: a Delta table (stock_assets.lake.delta,
    partitioned by year) or Hive-partitioned Parquet, a file per session."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        from stock_assets.lake import delta
    except ImportError:
        delta = None
    if delta is not None and hasattr(delta, "dataset"):
        return delta.dataset(storage, prefix)
    partitioning = ds.partitioning(pa.schema([("session", pa.date32())]), flavor="hive")
    return ds.dataset(storage.path(prefix), filesystem=storage.fs, format="parquet", partitioning=partitioning)


def layout_name(storage, prefix: str = "lake/deduped") -> str:
    if storage.list_files(f"{prefix}/_delta_log"):
        return "Delta table, partitioned by year, sorted by symbol"
    return "Parquet, a file per session (Hive)"


def query(store: str, symbol: str, session: str, first: str, last: str, repeats: int, **_) -> dict:
    """`store`: "lake" (the deduped layer: one symbol through a dataset of the whole table with a
    filter, one session through layout.read_sessions as the assets read it) or "warehouse" (SQL
    on the prices table)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from stock_assets.lake import layout
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.settings import Settings
    from stock_assets.warehouse.warehouse import warehouse_for_url

    settings = Settings.from_env()
    day = dt.date.fromisoformat(session)

    def close_sum(table: pa.Table) -> tuple[int, float]:
        return table.num_rows, pc.sum(table["close"]).as_py() or 0.0

    if store == "lake":

        def open_store():
            storage = LakeStorage(settings.lake_url)
            storage.fs  # noqa: B018 - the filesystem made (S3: its client) before the clock of the first query
            return storage

        def one_symbol(storage):
            return close_sum(lake_dataset(storage, "lake/deduped").to_table(columns=COLUMNS, filter=ds.field("symbol") == symbol))

        def one_session(storage):
            return close_sum(layout.read_sessions(storage, "lake/deduped", [day], schema=None).select(COLUMNS))
    else:
        columns = ", ".join(COLUMNS)

        def open_store():
            return warehouse_for_url(settings.warehouse_url)

        def one_symbol(warehouse):
            return close_sum(warehouse.query(f"SELECT {columns} FROM prices WHERE symbol = ? ORDER BY session", [symbol]))

        def one_session(warehouse):
            return close_sum(warehouse.query(f"SELECT {columns} FROM prices WHERE session = ? ORDER BY symbol", [day]))

    return time_queries(open_store, one_symbol, one_session, repeats)


if __name__ == "__main__":
    main(ingest, query, imports)
