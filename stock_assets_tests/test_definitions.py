"""The code location as Dagster sees it: the eleven assets, their partitions and the gate."""

import dagster as dg

from stock_assets.definitions import defs as code_location
from stock_assets.partitions import trading_sessions_partitions

defs = code_location()  # what Dagster loads, from the suite's environment

ASSETS = ["raw_prices", "landing_csv", "lake_parquet", "corporate_actions", "deduped_prices", "dq_report", "redshift_table", "indicators", "published_prices", "dashboard", "live_prices"]


def test_the_seven_assets_are_wired_as_designed():
    graph = defs.resolve_asset_graph()
    assert sorted(k.to_user_string() for k in graph.get_all_asset_keys()) == sorted(ASSETS)
    parents = {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys) for k in graph.get_all_asset_keys()}
    assert parents == {
        "raw_prices": [],
        "landing_csv": ["raw_prices"],
        "lake_parquet": ["landing_csv"],
        "corporate_actions": ["lake_parquet"],
        "deduped_prices": ["corporate_actions", "lake_parquet"],
        "dq_report": ["deduped_prices", "lake_parquet"],
        "redshift_table": ["deduped_prices", "dq_report"],
        "indicators": ["redshift_table"],
        "dashboard": ["dq_report", "indicators"],
        "published_prices": ["deduped_prices", "dq_report"],
        "live_prices": [],  # the session in progress: its own runs (live_prices_job), not the daily run's
    }
    daily = defs.resolve_job_def("daily_prices_job")
    assert "live_prices" not in {k.to_user_string() for k in daily.asset_layer.selected_asset_keys}
    assert dg.AssetCheckKey(dg.AssetKey("live_prices"), "live_prices_fresh") not in daily.asset_layer.asset_graph.asset_check_keys


ONE_THING = ["published_prices", "dashboard", "live_prices"]  # one pointer, one page, today so far: no per-session bookkeeping


def test_every_asset_is_session_partitioned_with_backfills_sized_to_the_universe():
    for key in ONE_THING:
        assert defs.resolve_assets_def(key).partitions_def is None
    for key in (k for k in ASSETS if k not in ONE_THING):
        asset = defs.resolve_assets_def(key)
        assert asset.partitions_def == trading_sessions_partitions("2012-01-03")  # STOCK_ASSETS_START in conftest
        # the suite's universe (5 symbols by default) of daily bars: every session since the start fits one run
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.descriptions_by_key[dg.AssetKey(key)]


def test_error_checks_gate_the_warehouse_and_warnings_do_not():
    specs = {s.name: s.blocking for s in defs.resolve_assets_def("dq_report").check_specs}
    assert specs == {
        "prices_not_null": True,
        "prices_positive": True,
        "prices_ohlc_consistent": True,
        "prices_unique_keys": True,
        "landing_files_intact": True,
        "landing_rows_reconcile": True,
        "deduped_rows_reconcile": True,
        "volume_nonzero": False,
        "lake_duplicate_keys": False,
        "prices_complete": True,  # blocking for a symbol absent without a known reason (ERROR); gaps warn
        "prices_final_bars": False,
        "prices_no_unexplained_jumps": False,
    }
    assert {s.name: s.blocking for s in defs.resolve_assets_def("redshift_table").check_specs} == {"warehouse_rows_reconcile": True, "prices_no_history_gaps": False}
    assert {s.name: s.blocking for s in defs.resolve_assets_def("landing_csv").check_specs} == {"landing_bars_accounted": True}


def test_two_code_locations_in_one_process_each_follow_their_own_settings(tmp_path):
    import dataclasses

    from stock_assets.definitions import build_defs
    from stock_assets.settings import Settings

    base = Settings.from_env({"STOCK_ASSETS_HOME": str(tmp_path)})
    synthetic = build_defs(dataclasses.replace(base, provider="synthetic", start="2015-01-02", step_retries=1))
    polygon = build_defs(dataclasses.replace(base, provider="polygon", start="2019-01-02", step_retries=4,
                                             symbols=tuple(f"S{i:03d}" for i in range(100)), interval="1min",
                                             warehouse_url="postgresql://stock@db.internal:5432/market"))  # fmt: skip
    seen = {}
    for name, built in (("synthetic", synthetic), ("polygon", polygon)):
        raw = built.resolve_assets_def("raw_prices")
        table = built.resolve_assets_def("redshift_table")
        seen[name] = (
            raw.partitions_def.get_first_partition_key(), raw.op.pool, raw.op.retry_policy.max_retries,
            raw.backfill_policy.max_partitions_per_run, table.specs_by_key[dg.AssetKey("redshift_table")].kinds,
            built.resolve_job_def("daily_prices_job").partitions_def.get_first_partition_key(),
        )  # fmt: skip
    assert seen == {
        "synthetic": ("2015-01-02", "provider_synthetic", 1, None, {"duckdb"}, "2015-01-02"),
        "polygon": ("2019-01-02", "provider_polygon", 4, 51, {"postgres"}, "2019-01-02"),
    }
