"""An action restates history: a month of SPLT loaded from a csvdir archive, then the next
window carries a $0.82 dividend and a 4:1 split. Afterwards lake/deduped, the warehouse prices
and every indicator equal, row for row, one clean load of the whole range (and TA-Lib over the
adjusted series); a re-run changes nothing; the windows loaded in the other order give the same
tables; a restatement SIGKILLed half-way leaves every table whole and the next run finishes it.

Helpers for other sources' tests: `settings_for(home, provider=…)`, `load`, `tables_of`."""

import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import talib

from stock_assets.cli import materialize_range
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.restatement import pending, read_actions
from stock_assets.settings import Settings
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.conftest import defs_for
from stock_assets_tests.test_cli import ROOT
from stock_assets_tests.test_faults import wait_until

pytestmark = pytest.mark.slow

A, B = ("2014-04-01", "2014-04-30"), ("2014-05-01", "2014-06-06")  # few sessions: each run costs its partitions' events
DIVIDEND, SPLIT = dt.date(2014, 5, 1), dt.date(2014, 6, 2)  # the close before the dividend is in A
SESSIONS = sessions_between("2012-01-03", A[0], B[1])


def archive_body() -> bytes:
    """SPLT's traded bars (zipline csvdir): a random walk near 100, a quarter of that from the split on."""
    rng = np.random.default_rng(24)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, len(SESSIONS))))
    close[np.array(SESSIONS) >= SPLIT] /= 4
    lines = ["date,open,high,low,close,volume,dividend,split"]
    for s, c, v in zip(SESSIONS, np.round(close, 4), rng.integers(1_000_000, 2_000_000, len(SESSIONS))):
        dividend, split = (0.82 if s == DIVIDEND else 0.0), (4.0 if s == SPLIT else 1.0)
        lines.append(f"{s},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{v},{dividend},{split}")
    return ("\n".join(lines) + "\n").encode()


def settings_for(home: Path, archive: Path | None = None, **more) -> Settings:
    """csvdir on `archive` for SPLT; `more` overrides any setting (provider=…, symbols=…)."""
    given = dict(home=home, provider="csvdir", csvdir_url=str(archive or ""), symbols=("SPLT",), interval="1d", start="2012-01-03",
                 lake_url=str(home / "lake"), warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}", synthetic_faults=(),
                 step_retry_delay_seconds=0.2)  # fmt: skip
    return Settings(**(given | more))


def load(settings: Settings, window: tuple[str, str]):
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_range(defs_for(settings), *window, instance)
    assert result.success, window
    return result


def tables_of(settings: Settings) -> dict[str, list[dict]]:
    """Every table an action touches, without what differs by when it was loaded."""
    lake, store = LakeStorage(settings.lake_url), warehouse_for_url(settings.warehouse_url)
    deduped = (
        delta.dataset(lake, "lake/deduped")
        .to_table()
        .drop_columns(["ingested_at", "year"])
        .sort_by([("symbol", "ascending"), ("ts", "ascending")])
    )
    indicators = (
        delta.dataset(lake, "lake/indicators")
        .to_table()
        .drop_columns(["year"])
        .sort_by([("symbol", "ascending"), ("ts", "ascending")])
    )
    actions = read_actions(lake).drop_columns(["first_seen"])
    return {
        "lake/deduped": deduped.to_pylist(), "lake/indicators": indicators.to_pylist(), "lake/corporate_actions": actions.to_pylist(),
        "prices": store.query("SELECT * EXCLUDE (ingested_at) FROM prices ORDER BY symbol, ts").to_pylist(),
        "indicators": store.query("SELECT * FROM indicators ORDER BY symbol, ts").to_pylist(),
        "corporate_actions": store.query("SELECT * EXCLUDE (first_seen, restated_at, restated_by_run) FROM corporate_actions ORDER BY ex_date").to_pylist(),
    }  # fmt: skip


def restated(result) -> list[str]:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "corporate_actions"
    ][:1]
    text = event.step_materialization_data.materialization.metadata["restatement"].value
    return [] if text == "none" else text.split("; ")


def archive_in(folder: Path) -> Path:
    (folder / "archive").mkdir()
    (folder / "archive" / "SPLT.csv").write_bytes(archive_body())
    return folder / "archive"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """The tables of one clean load of A and B together."""
    home = tmp_path_factory.mktemp("clean")
    settings = settings_for(home, archive_in(home))
    load(settings, (A[0], B[1]))
    return tables_of(settings)


def test_a_later_window_with_a_dividend_and_a_split_restates_every_earlier_session(tmp_path, clean):
    archive = archive_in(tmp_path)
    settings = settings_for(tmp_path / "home", archive)
    load(settings, A)
    before = tables_of(settings)
    assert {r["adj_close"] == r["close"] for r in before["prices"]} == {True}  # no action known yet

    result = load(settings, B)
    earlier = len(sessions_between("2012-01-03", *A))
    assert restated(result) == [f"SPLT: $0.82 dividend on {DIVIDEND} — {earlier} earlier sessions restated, indicators recomputed",
                                f"SPLT: 4:1 split on {SPLIT} — {earlier} earlier sessions restated, indicators recomputed"]  # fmt: skip
    after = tables_of(settings)
    assert after == clean
    manifest = json.loads(LakeStorage(settings.lake_url).read_bytes("published/LATEST"))
    assert manifest["restated"] == [
        {"symbol": "SPLT", "action": f"$0.82 dividend on {DIVIDEND}", "sessions": earlier},
        {"symbol": "SPLT", "action": f"4:1 split on {SPLIT}", "sessions": earlier},
    ]

    # CRSP by hand: before the dividend, F = (1 - 0.82 / the close before its ex-date) / 4.
    prices = {r["session"]: r for r in after["prices"]}
    f = (1 - 0.82 / prices[dt.date(2014, 4, 30)]["close"]) / 4
    assert (
        prices[dt.date(2014, 4, 1)]["adj_factor"] == f
        and prices[dt.date(2014, 4, 1)]["adj_close"] == prices[dt.date(2014, 4, 1)]["close"] * f
    )
    assert prices[DIVIDEND]["adj_factor"] == 0.25 and prices[SPLIT]["adj_factor"] == 1.0
    adjusted = np.array([r["adj_close"] for r in after["prices"]])
    for name, expected in (
        ("sma_20", talib.SMA(adjusted, 20)),
        ("rsi_14", talib.RSI(adjusted, 14)),
        ("ema_26", talib.EMA(adjusted, 26)),
    ):
        got = np.array([np.nan if r[name] is None else r[name] for r in after["indicators"]])
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True, err_msg=name)

    again = load(settings, B)
    assert restated(again) == [] and tables_of(settings) == after  # a re-run changes nothing
    assert "restated" not in json.loads(LakeStorage(settings.lake_url).read_bytes("published/LATEST"))


def test_windows_loaded_in_the_other_order_give_the_same_tables(tmp_path, clean):
    archive = archive_in(tmp_path)
    settings = settings_for(tmp_path / "home", archive)
    load(settings, B)
    result = load(settings, A)  # the dividend's factor is known only now (the close before it is in A)
    assert restated(result) == [
        f"SPLT: $0.82 dividend on {DIVIDEND} — 0 earlier sessions restated, indicators recomputed"
    ]
    assert tables_of(settings) == clean


CHILD = """
import pathlib, sys, time
from stock_assets import restatement
from stock_assets_tests.test_restatement import B, load, settings_for

computed = restatement.compute_indicators
def then_stop(bars):  # lake/deduped and the warehouse prices are restated: die before the indicators
    values = computed(bars)
    pathlib.Path(sys.argv[3]).touch()
    time.sleep(120)
    return values
restatement.compute_indicators = then_stop
load(settings_for(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])), B)
"""


def test_a_restatement_killed_half_way_leaves_every_table_whole_and_the_next_run_finishes_it(tmp_path, clean):
    archive = archive_in(tmp_path)
    settings = settings_for(tmp_path / "home", archive)
    load(settings, A)
    before = tables_of(settings)

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.home), str(archive), str(tmp_path / "mid")], cwd=ROOT
    )
    wait_until(lambda: (tmp_path / "mid").exists() or child.poll() is not None, 120, "the restatement is half-way")
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    half = tables_of(settings)  # every table reads whole: the old version, or the restated one
    assert len(half["lake/deduped"]) == len(half["prices"]) == len(before["prices"])
    assert half["indicators"] == before["indicators"] and half["corporate_actions"] == []
    assert {r["adj_close"] == r["close"] * r["adj_factor"] for r in half["prices"]} == {True}
    store = warehouse_for_url(settings.warehouse_url)
    assert pending(LakeStorage(settings.lake_url), store)["kind"].to_pylist() == ["dividend", "split"]  # still to do

    load(settings, B)
    assert pending(LakeStorage(settings.lake_url), store).num_rows == 0
    assert tables_of(settings) == clean
    assert pc.sum(pa.array([r["adj_factor"] != 1.0 for r in tables_of(settings)["prices"]])).as_py() > 0
