"""Corporate actions: what the window's bars (and Polygon's reference payloads) say of splits and
dividends, kept in lake/corporate_actions and the warehouse table `corporate_actions`; a change
restates every loaded session of its symbol before deduped_prices adjusts the window."""

import dagster as dg
import pyarrow as pa

from stock_assets import clock
from stock_assets.defs.common import (
    add_partition_metadata,
    last_materialization_in_run,
    run_window,
    session_partitioned,
    warehouse_kind,
    window_sessions,
)
from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.providers.registry import parse_actions
from stock_assets.restatement import (
    WAREHOUSE_TABLE,
    describe_restated,
    pending,
    record_applied,
    restate,
    update_actions,
)
from stock_assets.settings import Settings
from stock_assets.transforms.actions import actions_from_bars, describe_action
from stock_assets.transforms.dedup import dedupe_latest
from stock_assets.warehouse.io_manager import WarehouseResource

SEPARATE_ACTIONS = {"polygon"}  # providers whose actions come apart from the bars, as raw/ payloads
SHOWN = 5  # actions named in the metadata of every session but the window's last (see below)


def shortened(items: list[str], last: str) -> str:
    more = f"; and {len(items) - SHOWN} more (all of them on {last})" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more or "none"


def restated_in(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """What corporate_actions restated in the run (else in its latest materialization, for a
    publish in a run of its own): [{"symbol", "action", "sessions"}]."""
    key = dg.AssetKey("corporate_actions")
    event = last_materialization_in_run(instance, key, run_id)
    if event is None:
        latest = instance.fetch_materializations(key, limit=1).records
        event = latest[0].asset_materialization if latest else None
    said = event.metadata.get("restated") if event else None
    return list(said.value) if said is not None else []


def build(settings: Settings) -> dg.Definitions:
    @dg.asset(**session_partitioned(settings), group_name="lake", kinds={"deltalake", warehouse_kind(settings)})
    def corporate_actions(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, lake_parquet: pa.Table
    ) -> dg.MaterializeResult:
        """A row is one split or cash dividend of a symbol on its ex-date: ratio or amount, source,
        when first seen, and the factor it applies to every earlier session (CRSP convention:
        1/r for a split of r, 1 - D / the close before the ex-date for a dividend D). Kept in the
        Delta table lake/corporate_actions and the warehouse table `corporate_actions`.

        When a run changes a symbol's actions (a new one, or a dividend's factor now known), every
        loaded session of that symbol is restated here, before deduped_prices adjusts the window:
        lake/deduped, the warehouse `prices`, and the indicators over its whole history, each in
        one commit or transaction. The warehouse table is written last, so a restatement cut
        short is finished by the next run."""
        sessions, storage = window_sessions(context), lake.storage()
        window = dedupe_latest(lake_parquet)
        found = actions_from_bars(window)
        if settings.provider in SEPARATE_ACTIONS:
            found = pa.concat_tables([found, parse_actions(layout.read_raw(storage, sessions[0], sessions[-1]))])
        symbols = sorted(set(run_window(context, settings).symbols) | set(window["symbol"].to_pylist()))
        known = update_actions(storage, found, window, symbols)
        store = warehouse.get(lake=storage)
        todo = pending(storage, store)
        restated = []
        if not store.table_exists(WAREHOUSE_TABLE):
            record_applied(
                store, known.slice(0, 0), symbols, context.run.run_id, clock.now()
            )  # the table exists from the first run
        if todo.num_rows:
            restated = restate(
                storage, store, sorted(set(todo["symbol"].to_pylist())), sessions, context.run.run_id, clock.now()
            )
            for item in restated[:SHOWN]:  # each line is an event of the run's log, stored on its own
                context.log.info(describe_restated(item))
            if len(restated) > SHOWN:
                context.log.info(f"and {len(restated) - SHOWN} more restatements: all in the metadata of {sessions[-1]}'s materialization")
        in_window = [
            describe_action(a) + f" ({a['symbol']})"
            for a in known.to_pylist()
            if sessions[0] <= a["ex_date"] <= sessions[-1]
        ]
        said = [describe_restated(r) for r in restated]
        listed = {"actions_in_window": "; ".join(in_window) or "none", "restated": dg.MetadataValue.json(restated), "restatement": "; ".join(said) or "none"}
        if len(in_window) > SHOWN or len(restated) > SHOWN:
            # Dagster copies a window's metadata onto every session's materialization: a 10-year window's
            # 3,000 actions made 540 KB an event. All of it goes on the last session (restated_in reads that one).
            last = str(sessions[-1])
            add_partition_metadata(context, {last: listed})
            listed = {"actions_in_window": shortened(in_window, last), "restated": dg.MetadataValue.json(restated[:SHOWN]), "restatement": shortened(said, last)}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": known.num_rows,
                "window": f"{sessions[0]}..{sessions[-1]}",
                **listed,
                "lake_location": dg.MetadataValue.path(storage.uri("lake/corporate_actions")),
            }
        )

    return dg.Definitions(assets=[corporate_actions])
