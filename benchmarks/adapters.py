"""The project's plain functions the benchmarks call, in one place: when a signature moves,
this is the file to adapt. Everything here runs inside a child (imports Dagster-side code)."""

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.lake import layout
from stock_assets.providers import registry
from stock_assets.providers.synthetic import SyntheticProvider


def indicators_module():
    from stock_assets.transforms import indicators

    return indicators


def compute_indicators(bars: pa.Table) -> pa.Table:
    """The project's indicator computation over a table of canonical bars."""
    return indicators_module().compute_indicators(bars)


def indicators_for_window(warehouse, first: dt.date, last: dt.date) -> pa.Table:
    """What the `indicators` asset computes: the window from the warehouse with its lookback."""
    module = indicators_module()
    if hasattr(module, "indicators_for_window"):
        return module.indicators_for_window(warehouse, first, last)[0]
    bars = warehouse.query("SELECT * FROM prices WHERE session <= ?", [last])  # no bounded read offered
    values = module.compute_indicators(bars)
    return values.filter(pc.greater_equal(values["session"], pa.scalar(first, pa.date32())))


def evaluate_window(storage, lake, deduped, previous, sessions, symbols, threshold) -> pa.Table:
    """What dq_report evaluates, the landing side read as the asset reads it."""
    from stock_assets.transforms.quality_run import evaluate_window

    return evaluate_window(lake, layout.inspect_landing(storage, sessions), deduped, previous, sessions, symbols, threshold)


def publish_window(storage, sessions) -> int:
    """What published_prices does: the version of lake/deduped just written recorded as production; its rows."""
    from stock_assets.defs.publish import TABLE, publish_version
    from stock_assets.lake import delta

    version = delta.open_table(storage, TABLE).version()
    return publish_version(storage, version, sessions, dt.datetime.now(dt.UTC), "bench", {})["rows"]


def fetch_synthetic(symbols: list[str], sessions: list[dt.date]) -> list:
    """Raw payloads of the synthetic provider (one CSV per symbol), as raw_prices gets them."""
    return SyntheticProvider().fetch(symbols, sessions, "1d").payloads


def parse_payloads(payloads: list) -> pa.Table:
    """As landing_csv parses raw_prices' payloads (none fails here)."""
    return pa.concat_tables(registry.parse_payloads(payloads, ()))


def synthetic_table(symbols: list[str], sessions: list[dt.date]) -> pa.Table:
    """Canonical bars of the synthetic provider, parsed as landing_csv parses them."""
    return parse_payloads(fetch_synthetic(symbols, sessions))


__all__ = ["compute_indicators", "evaluate_window", "fetch_synthetic", "indicators_for_window", "layout", "parse_payloads", "publish_window",
           "synthetic_table"]
