"""The lake's IO manager: one class for every lake asset, local folder or S3 alike.

An asset names its place in the lake with `metadata={"lake_path": ...}`: "raw" and
"landing" have layouts of their own, anything else is a Delta table (lake/delta.py). Outputs
and inputs span the run's whole partition window (single-run backfills).

Within one run the landing or Delta window an asset just wrote is also handed to the steps
downstream as it is, in memory (stock_assets/lake/handoff.py): a 10-year window is thousands of
files, and reading them back costs as much as writing them.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator

import dagster as dg
from pydantic import PrivateAttr

from stock_assets.full_disk import DiskFullError
from stock_assets.lake.handoff import HANDOFF_MAX_BYTES, Handoff, load_window, store_window  # noqa: F401 - also imported from here
from stock_assets.lake.storage import LakeStorage
from stock_assets.window import SYMBOLS_TAG, window_of


class LakeResource(dg.ConfigurableResource):
    """The lake root: a local path or s3://bucket/prefix (STOCK_ASSETS_LAKE_URL)."""

    url: str

    def storage(self) -> LakeStorage:
        return LakeStorage(self.url)


@contextlib.contextmanager
def stop_when_disk_full() -> Iterator[None]:
    """A full disk fails the step at once, not after its retries: no retry frees a disk."""
    try:
        yield
    except DiskFullError as err:
        raise dg.Failure(str(err), allow_retries=False) from err


def _sessions(context: dg.InputContext | dg.OutputContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.asset_partition_keys]


def window_symbols(context: dg.InputContext | dg.OutputContext, universe: list[str]) -> tuple[str, ...] | None:
    """The run's window's symbols (stock_assets.window): its tag, else `universe`; None (every
    symbol) when neither is known (an IO manager built without the universe)."""
    step = getattr(context, "_step_context", None)  # absent in a context built by hand (tests)
    tags = step.run_tags if step is not None else {}
    if SYMBOLS_TAG not in tags and not universe:
        return None
    return window_of([], tags, universe).symbols


def window_scope(context: dg.InputContext | dg.OutputContext) -> str:
    """The run's window's scope (stock_assets.window.Window.scope): 'universe' or its symbols."""
    step = getattr(context, "_step_context", None)
    return window_of([], step.run_tags if step is not None else {}, ()).scope


class LakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource
    universe: list[str] = []  # STOCK_ASSETS_SYMBOLS: a window's symbols unless its run names others
    _handoff: Handoff = PrivateAttr(default_factory=Handoff)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        where = context.definition_metadata["lake_path"]
        storage = self.lake.storage()
        with stop_when_disk_full():
            paths = store_window(self._handoff, storage, where, obj, _sessions(context), window_symbols(context, self.universe))
        written = {"files_written": len(paths)} if where in ("raw", "landing") else {"delta_version": int(paths[0].rsplit("@v", 1)[1])}
        context.add_output_metadata(written | {"lake_location": dg.MetadataValue.path(storage.uri(where))})

    def load_input(self, context: dg.InputContext):
        where = context.upstream_output.definition_metadata["lake_path"]
        return load_window(self._handoff, self.lake.storage(), where, _sessions(context), window_symbols(context, self.universe))
