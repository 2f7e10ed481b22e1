"""Published snapshot: after every blocking check of the run passed, the window's deduped bars
are copied to published/<timestamp>/ and published/LATEST is pointed at them (the seed's
archived production copy, suffixed with date and time)."""

import datetime as dt
import json

import dagster as dg

from stock_assets.defs.common import session_partitioned, window_sessions
from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings


def publish_window(storage: LakeStorage, sessions: list[dt.date], now: dt.datetime, run_id: str) -> dict:
    """Copy the window's deduped files, as checked, to published/<stamp>/ and point LATEST at
    them: the manifest."""
    prefix = f"published/{layout.stamp(now)}"
    files, rows = layout.copy_sessions(storage, "lake/deduped", prefix, sessions)
    manifest = {
        "published_at": now.isoformat(),
        "prefix": prefix,
        "window": [str(sessions[0]), str(sessions[-1])],
        "rows": rows,
        "files": files,
        "run_id": run_id,
    }
    body = json.dumps(manifest, indent=2).encode()
    storage.write_bytes(f"{prefix}/_manifest.json", body)
    storage.write_bytes("published/LATEST", body)  # one atomic write: readers see old or new
    return manifest


def build(settings: Settings) -> dg.Definitions:
    partitioned = session_partitioned(settings)

    @dg.asset(**partitioned, deps=["dq_report", "deduped_prices"], group_name="lake", kinds={"parquet"})
    def published_prices(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        """The window's deduped bars as checked, under published/<timestamp>/; LATEST names the newest."""
        sessions = window_sessions(context)
        storage = lake.storage()
        manifest = publish_window(storage, sessions, dt.datetime.now(dt.UTC), context.run.run_id)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": manifest["rows"],
                "published": dg.MetadataValue.path(storage.uri(manifest["prefix"])),
                "files": len(manifest["files"]),
                "window": f"{sessions[0]}..{sessions[-1]}",
            }
        )

    return dg.Definitions(assets=[published_prices])
