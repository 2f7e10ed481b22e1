"""Technical indicators per (symbol, interval), computed over a lookback plus the window.

First version: SMA 7/30 and daily % change, on adj_close where present, else close.
"""

import duckdb
import pyarrow as pa

from stock_assets.schema import conform

# Bars read before a window so that every indicator of the window equals its full-history
# value (EMA-based ones converge to 1e-9 within 300 bars: FIELD-NOTES.md).
LOOKBACK_SESSIONS = 300

INDICATOR_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("session", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("interval", pa.string()),
        ("sma_7", pa.float64()),
        ("sma_30", pa.float64()),
        ("pct_change", pa.float64()),
    ]
)


def compute_indicators(bars: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bars", bars)
    result = con.sql(
        """
        WITH px AS (SELECT symbol, session, ts, interval, coalesce(adj_close, close) AS price FROM bars)
        SELECT symbol, session, ts, interval,
               CASE WHEN count(price) OVER w7 = 7 THEN avg(price) OVER w7 END AS sma_7,
               CASE WHEN count(price) OVER w30 = 30 THEN avg(price) OVER w30 END AS sma_30,
               price / lag(price) OVER (PARTITION BY symbol, interval ORDER BY ts) - 1 AS pct_change
        FROM px
        WINDOW w7 AS (PARTITION BY symbol, interval ORDER BY ts ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
               w30 AS (PARTITION BY symbol, interval ORDER BY ts ROWS BETWEEN 29 PRECEDING AND CURRENT ROW)
        ORDER BY symbol, interval, ts
        """
    ).to_arrow_table()
    return conform(result, INDICATOR_SCHEMA)
