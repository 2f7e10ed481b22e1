"""stock_assets: a market-data platform as a Dagster code location (README.md)."""

import os

import pyarrow as pa

# jemalloc for Arrow's buffers unless ARROW_DEFAULT_MEMORY_POOL says otherwise: measured on the
# data path (make bench, item 1), a whole run's peak RSS is ~15 % lower than with mimalloc, which
# keeps what each stage freed, and no slower.
if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow build without jemalloc keeps its default
        pass
