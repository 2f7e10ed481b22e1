"""Ingest: fetch the window from the provider (raw_prices), land it as CSV (landing_csv)."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.defs.common import SESSION_PARTITIONED, table_metadata, window_sessions
from stock_assets.providers.base import RawPayload
from stock_assets.providers.resource import ProviderResource, provider_named
from stock_assets.schema import BAR_SCHEMA


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="lake_io_manager",
    metadata={"lake_path": "raw"},
    group_name="ingest",
    kinds={"python"},
)
def raw_prices(context: dg.AssetExecutionContext, provider: ProviderResource) -> dg.Output[list[RawPayload]]:
    """Provider payloads for the window, byte-for-byte as received (bronze): one per request."""
    sessions = window_sessions(context)
    payloads = provider.client().fetch(provider.symbols, sessions, provider.interval)
    fetched = {p.symbol for p in payloads}
    return dg.Output(
        payloads,
        metadata={
            "provider": provider.name,
            "synthetic": provider.name == "synthetic",
            "payloads": len(payloads),
            "bytes": sum(len(p.body) for p in payloads),
            "symbols_missing": ", ".join(s for s in provider.symbols if s not in fetched) or "none",
            "window": f"{sessions[0]}..{sessions[-1]}",
        },
    )


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="lake_io_manager",
    metadata={"lake_path": "landing"},
    group_name="ingest",
    kinds={"csv"},
)
def landing_csv(context: dg.AssetExecutionContext, raw_prices: list[RawPayload]) -> dg.Output[pa.Table]:
    """Normalized bars as seed-format CSV, one file per session and ingestion under landing/<date>/."""
    sessions = window_sessions(context)
    parsed = [provider_named(p.provider).parse(p) for p in raw_prices]
    bars = pa.concat_tables(parsed) if parsed else BAR_SCHEMA.empty_table()
    in_window = pc.and_(pc.greater_equal(bars["session"], sessions[0]), pc.less_equal(bars["session"], sessions[-1]))
    bars = bars.filter(in_window)
    return dg.Output(bars, metadata=table_metadata(bars, sessions))
