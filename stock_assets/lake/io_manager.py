"""The lake's IO manager: one class for every lake asset, local folder or S3 alike.

An asset names its place in the lake with `metadata={"lake_path": ...}`: "raw" and
"landing" have layouts of their own, anything else is Hive-partitioned Parquet. Outputs
and inputs span the run's whole partition window (single-run backfills).
"""

import datetime as dt

import dagster as dg

from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage


class LakeResource(dg.ConfigurableResource):
    """The lake root: a local path or s3://bucket/prefix (STOCK_ASSETS_LAKE_URL)."""

    url: str

    def storage(self) -> LakeStorage:
        return LakeStorage(self.url)


def _sessions(context: dg.InputContext | dg.OutputContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.asset_partition_keys]


class LakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        where = context.definition_metadata["lake_path"]
        sessions, storage = _sessions(context), self.lake.storage()
        if where == "raw":
            paths = layout.write_raw(storage, obj, sessions[0], sessions[-1])
        elif where == "landing":
            paths = layout.write_landing(storage, obj, sessions)
        else:
            paths = layout.write_sessions(storage, where, obj, sessions)
        context.add_output_metadata(
            {"files_written": len(paths), "lake_location": dg.MetadataValue.path(storage.uri(where))}
        )

    def load_input(self, context: dg.InputContext):
        where = context.upstream_output.definition_metadata["lake_path"]
        sessions, storage = _sessions(context), self.lake.storage()
        if where == "raw":
            return layout.read_raw(storage, sessions[0], sessions[-1])
        if where == "landing":
            return layout.read_landing(storage, sessions)
        return layout.read_sessions(storage, where, sessions)
