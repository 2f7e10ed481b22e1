"""Deduplication: one bar per (symbol, interval, ts); the latest ingestion wins."""

import duckdb
import pyarrow as pa

from stock_assets import tables
from stock_assets.schema import KEY_COLUMNS, conform


def dedupe_latest(bars: pa.Table) -> pa.Table:
    if tables.is_sorted(bars, KEY_COLUMNS) and not tables.repeated_rows(bars, KEY_COLUMNS).any():
        return bars  # no key twice (the usual window, read sorted from the lake): nothing to choose
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bars", bars)
    # Ties on ingested_at (a payload repeating a row) keep the most complete copy.
    result = con.sql(
        """
        SELECT * FROM bars
        QUALIFY row_number() OVER (
            PARTITION BY symbol, interval, ts
            ORDER BY ingested_at DESC, close IS NULL, volume IS NULL, close DESC, volume DESC
        ) = 1
        """
    ).to_arrow_table()
    return conform(result, bars.schema)

