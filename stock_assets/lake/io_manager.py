"""The lake's IO manager: one class for every lake asset, local folder or S3 alike.

An asset names its place in the lake with `metadata={"lake_path": ...}`: "raw" and
"landing" have layouts of their own, anything else is Hive-partitioned Parquet. Outputs
and inputs span the run's whole partition window (single-run backfills).

Within one run the landing or Parquet window an asset just wrote is also handed to the steps
downstream as it is, in memory (the in-process executor keeps one IO manager for the run): a
10-year window is thousands of files, and reading them back costs as much as writing them. The
handoff holds what a read would return (layout.write_and_keep, write_landing_and_keep), only
while it is small enough (HANDOFF_MAX_BYTES) and, for landing, only while the window's folders
hold just the files written; every other load reads the lake.
"""

import datetime as dt

import dagster as dg
import pyarrow as pa
from pydantic import PrivateAttr

from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage


class LakeResource(dg.ConfigurableResource):
    """The lake root: a local path or s3://bucket/prefix (STOCK_ASSETS_LAKE_URL)."""

    url: str

    def storage(self) -> LakeStorage:
        return LakeStorage(self.url)


HANDOFF_MAX_BYTES = 512 << 20  # per run: two 10-year windows of 500 symbols' daily bars


def _sessions(context: dg.InputContext | dg.OutputContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.asset_partition_keys]


class Handoff:
    """The windows a run's lake IO manager hands on: (lake path, first, last) -> (files written,
    the window as a read returns it). At most `max_bytes` in all, the oldest dropped first: in
    this graph that is a window whose one consumer has already run (landing once the lake is
    written), so the two the checks need stay."""

    def __init__(self, max_bytes: int = HANDOFF_MAX_BYTES):
        self.max_bytes, self.windows = max_bytes, {}

    def put(self, where: str, sessions: list[dt.date], paths: list[str], table: pa.Table) -> None:
        key = (where, sessions[0], sessions[-1])
        self.windows.pop(key, None)
        while self.windows and sum(t.nbytes for _, t in self.windows.values()) + table.nbytes > self.max_bytes:
            self.windows.pop(next(iter(self.windows)))
        if table.nbytes <= self.max_bytes:
            self.windows[key] = (paths, table)

    def get(self, where: str, sessions: list[dt.date], storage: LakeStorage) -> pa.Table | None:
        paths, table = self.windows.get((where, sessions[0], sessions[-1]), (None, None))
        if table is not None and where == "landing" and layout.landing_files(storage, sessions) != paths:
            return None  # files dropped into landing since (ext-*): read them all
        return table


class LakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource
    _handoff: Handoff = PrivateAttr(default_factory=Handoff)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        where = context.definition_metadata["lake_path"]
        sessions, storage = _sessions(context), self.lake.storage()
        if where == "raw":
            paths = layout.write_raw(storage, obj, sessions[0], sessions[-1])
        elif where == "landing":
            paths, kept = layout.write_landing_and_keep(storage, obj, sessions)
            self._handoff.put(where, sessions, paths, kept)
        else:
            paths, kept = layout.write_and_keep(storage, where, obj, sessions)
            self._handoff.put(where, sessions, paths, kept)
        context.add_output_metadata(
            {"files_written": len(paths), "lake_location": dg.MetadataValue.path(storage.uri(where))}
        )

    def load_input(self, context: dg.InputContext):
        where = context.upstream_output.definition_metadata["lake_path"]
        sessions, storage = _sessions(context), self.lake.storage()
        if where == "raw":
            return layout.read_raw(storage, sessions[0], sessions[-1])
        if (handed := self._handoff.get(where, sessions, storage)) is not None:
            return handed
        if where == "landing":
            return layout.read_landing(storage, sessions)
        return layout.read_sessions(storage, where, sessions)
