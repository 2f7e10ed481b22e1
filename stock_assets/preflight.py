"""Before a run spends provider quota or writes anything: can it reach what it writes to?

Plain checks, no Dagster: each returns why not, naming the variable to fix, or None.
"""

import os
import re
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from stock_assets.warehouse.common import redact, redact_url

# Another process holds the DuckDB file (a concurrent run's load): the warehouse is there, only busy.
_LOCKED = re.compile(r"Could not set lock|Conflicting lock|WarehouseLockedError")


def unreachable(warehouse, warehouse_url: str, storage, lake_url: str, budget) -> str | None:
    """Why the warehouse, the lake root or the provider's budget store cannot be used, or None.
    A DuckDB file locked by a concurrent run counts as reachable."""
    try:
        warehouse.query("SELECT 1")
    except Exception as err:  # noqa: BLE001 - any engine, any driver: reported, then the run stops
        if not _LOCKED.search(f"{type(err).__name__}: {err}"):
            why = redact(f"{type(err).__name__}: {err}", urlsplit(warehouse_url).password)
            return f"the warehouse {redact_url(warehouse_url)} cannot be reached; check STOCK_ASSETS_WAREHOUSE_URL: {why}"
    try:
        problem = lake_problem(storage.fs, storage.path(""), storage.is_local)
    except Exception as err:  # noqa: BLE001 - S3 credentials, endpoint, network
        problem = f"{type(err).__name__}: {err}"
    if problem:
        return f"the lake {lake_url} cannot be reached; check STOCK_ASSETS_LAKE_URL: {problem}"
    try:
        if budget is not None:
            budget.check()
    except Exception as err:  # noqa: BLE001 - BudgetStoreError names the variable and the store
        return f"the provider's daily budget cannot be counted; check STOCK_ASSETS_PROVIDER_BUDGET_URL: {err}"
    return None


def lake_problem(fs: pafs.FileSystem, root: str, local: bool) -> str | None:
    """Why the lake root cannot hold the lake, or None. It need not exist yet: the first write makes it."""
    root = root.rstrip("/")  # "<root>/" reads as NotFound even where <root> is a file
    info = fs.get_file_info(root)  # raises when S3 cannot be reached
    if info.type == pafs.FileType.File:
        return f"{root} is a file, not a folder"
    if local:
        if info.type == pafs.FileType.Directory:
            return None if os.access(root, os.W_OK | os.X_OK) else f"{root} is not writable"
        parent = os.path.dirname(root)
        while parent and not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            return f"{root} cannot be made: {parent} is not a folder"
        return None if os.access(parent, os.W_OK | os.X_OK) else f"{root} cannot be made: {parent} is not writable"
    bucket = root.split("/", 1)[0]
    if fs.get_file_info(bucket).type != pafs.FileType.Directory:
        return f"the bucket {bucket} does not exist"
    return None
