"""The orchestrator floor: a no-op graph of exactly our shape, built by reading our asset graph.

Same asset keys and dependencies (data inputs stay inputs, `deps` stay deps), the same
partitions definition and backfill policy, the same check specs (blocking as ours) on the
same assets, the same standalone checks, the same pools and IO manager keys, the in-process
executor. Each asset does nothing and passes its checks; the IO managers store nothing. What
a run of it costs is what Dagster's bookkeeping costs for our shape (the orchestrator floor:
one planned and one materialization event per asset and partition).
"""

import dagster as dg


class NullIOManager(dg.ConfigurableIOManager):
    """Stores nothing, loads None."""

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        return None

    def load_input(self, context: dg.InputContext):
        return None


def _is_nothing(assets_def: dg.AssetsDefinition, input_name: str) -> bool:
    return assets_def.node_def.input_def_named(input_name).dagster_type.is_nothing


def noop_asset(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    inputs = assets_def.keys_by_input_name
    specs = list(assets_def.check_specs)

    @dg.asset(
        key=assets_def.key,
        ins={name: dg.AssetIn(key) for name, key in inputs.items() if not _is_nothing(assets_def, name)},
        deps=[key for name, key in inputs.items() if _is_nothing(assets_def, name)],
        partitions_def=assets_def.partitions_def,
        backfill_policy=assets_def.backfill_policy,
        check_specs=specs or None,
        pool=assets_def.node_def.pool,
        io_manager_key=assets_def.get_io_manager_key_for_asset_key(assets_def.key),
        group_name=assets_def.group_names_by_key[assets_def.key],
    )
    def noop(**_inputs):
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name=s.name, passed=True) for s in specs])

    return noop


def noop_check(checks_def: dg.AssetChecksDefinition) -> dg.AssetChecksDefinition:
    (spec,) = checks_def.check_specs

    @dg.asset_check(asset=spec.asset_key, name=spec.name, blocking=spec.blocking, additional_deps=spec.additional_deps or None)
    def noop() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return noop


def shape(defs: dg.Definitions) -> dict:
    """Assets, their parents and checks: to show the floor has our shape."""
    graph = defs.resolve_asset_graph()
    return {
        "assets": {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys) for k in graph.get_all_asset_keys()},
        "checks": sorted(c.to_user_string() for c in graph.asset_check_keys),
        "partitioned": sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def),
    }


def floor_defs(ours: dg.Definitions) -> dg.Definitions:
    graph = ours.resolve_asset_graph()
    assets, checks = [], []
    for assets_def in graph.assets_defs:
        if isinstance(assets_def, dg.AssetChecksDefinition) or not assets_def.keys:
            checks.append(noop_check(assets_def))
        elif len(assets_def.keys) == 1:
            assets.append(noop_asset(assets_def))
        else:
            raise ValueError(f"the floor builds single assets only; {assets_def.keys} is a multi-asset")
    keys = {a.get_io_manager_key_for_asset_key(a.key) for a in assets} | {"io_manager"}
    floor = dg.Definitions(
        assets=assets, asset_checks=checks, resources={k: NullIOManager() for k in keys}, executor=dg.in_process_executor
    )
    if shape(floor) != shape(ours):
        raise AssertionError(f"the floor's shape differs from ours:\n{shape(floor)}\n{shape(ours)}")
    return floor
