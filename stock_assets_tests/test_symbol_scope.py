"""Windows scoped to symbols, and the universe over time (README "How history stays consistent"):
a window is a set of symbols × a range of sessions (stock_assets/window.py), and every layer
replaces only the window's symbols' rows in the window's sessions."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import BAR_SCHEMA, conform
from stock_assets.transforms.quality import session_rows
from stock_assets.warehouse.warehouse import WarehouseLoadError, warehouse_for_url
from stock_assets_tests.conftest import ROOT, defs_for, fixture_bytes

D1, D2 = dt.date(2012, 1, 3), dt.date(2012, 1, 4)


def bars(symbols, sessions, close: float) -> pa.Table:
    rows = [{"symbol": s, "session": d, "ts": dt.datetime(d.year, d.month, d.day, 21, tzinfo=dt.UTC), "interval": "1d",
             "close": close, "source": "test", "ingested_at": dt.datetime.now(dt.UTC)} for s in symbols for d in sessions]  # fmt: skip
    return conform(pa.Table.from_pylist(rows), BAR_SCHEMA)


def test_write_window_scoped_to_symbols_keeps_other_symbols_rows(tmp_path):
    storage = LakeStorage(str(tmp_path / "lake"))
    delta.write_window(storage, "lake/prices", bars(["AAPL", "MSFT"], [D1, D2], 1.0), [D1, D2])
    # A window of IBM alone: a row of AAPL handed over by mistake is not written either.
    _, written = delta.write_window(storage, "lake/prices", bars(["IBM", "AAPL"], [D1, D2], 2.0), [D1, D2], symbols=["IBM"])
    assert set(written["symbol"].to_pylist()) == {"IBM"}
    rows = delta.read_window(storage, "lake/prices", [D1, D2]).to_pylist()
    assert {(r["symbol"], r["close"]) for r in rows} == {("AAPL", 1.0), ("MSFT", 1.0), ("IBM", 2.0)}
    assert len(rows) == 6
    only_ibm = delta.read_window(storage, "lake/prices", [D1, D2], symbols=["IBM"])
    assert only_ibm["symbol"].to_pylist() == ["IBM", "IBM"]
    # The unscoped window replaces every symbol's rows, as before.
    delta.write_window(storage, "lake/prices", bars(["AAPL"], [D1], 3.0), [D1, D2])
    assert delta.read_window(storage, "lake/prices", [D1, D2])["symbol"].to_pylist() == ["AAPL"]



def test_landing_of_a_window_scoped_to_symbols_leaves_other_symbols_files(tmp_path):
    storage = LakeStorage(str(tmp_path / "lake"))
    both = bars(["AAPL", "MSFT"], [D1, D2], 1.0)
    layout.write_landing(storage, both, [D1, D2], symbols=["AAPL", "MSFT"])
    universe_files = {p: storage.read_bytes(p) for p in storage.list_files("landing")}
    layout.write_landing(storage, bars(["MSFT"], [D1, D2], 2.0), [D1, D2], symbols=["MSFT"])
    assert all(storage.read_bytes(p) == b for p, b in universe_files.items())  # AAPL's files untouched
    closes = lambda rows: sorted((r["symbol"], str(r["session"]), r["close"]) for r in rows.to_pylist())
    assert closes(layout.read_landing(storage, [D1, D2])) == [("AAPL", str(D1), 1.0), ("AAPL", str(D2), 1.0), ("MSFT", str(D1), 2.0), ("MSFT", str(D2), 2.0)]
    assert closes(layout.read_landing(storage, [D1, D2], ["MSFT"])) == [("MSFT", str(D1), 2.0), ("MSFT", str(D2), 2.0)]
    assert layout.inspect_landing(storage, [D1, D2], ["AAPL", "MSFT"]) == ({D1: 2, D2: 2}, {})
    assert layout.inspect_landing(storage, [D1, D2], ["MSFT"]) == ({D1: 1, D2: 1}, {})
    assert layout.landing_record_rows(storage, [D1, D2], ["MSFT"]) == 2

    # MSFT again, now without a bar on D2: its older rows there are hidden, AAPL's still read.
    layout.write_landing(storage, bars(["MSFT"], [D1], 3.0), [D1, D2], symbols=["MSFT"])
    assert closes(layout.read_landing(storage, [D1, D2])) == [("AAPL", str(D1), 1.0), ("AAPL", str(D2), 1.0), ("MSFT", str(D1), 3.0)]
    assert layout.inspect_landing(storage, [D1, D2], ["AAPL", "MSFT"]) == ({D1: 2, D2: 1}, {})
    with pytest.raises(ValueError, match="outside the landing window's"):
        layout.write_landing(storage, both, [D1, D2], symbols=["MSFT"])

    # A window of the universe replaces every file its scope covers: one file per session again.
    layout.write_landing(storage, both, [D1, D2], symbols=["AAPL", "MSFT"])
    assert len(layout.landing_files(storage, [D1, D2])) == 2
    assert closes(layout.read_landing(storage, [D1, D2])) == closes(both)



@pytest.fixture(params=["duckdb", "postgresql", "redshift"])
def engine(request, tmp_path):
    """Each warehouse dialect: DuckDB, PostgreSQL, and Redshift's SQL on PostgreSQL with its COPY from the S3 lake (moto)."""
    if request.param == "duckdb":
        return warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
    if request.param == "postgresql":
        return warehouse_for_url(request.getfixturevalue("postgres_url"))
    from stock_assets_tests.test_warehouse_redshift import ROLE, RedshiftOnPostgres

    redshift = RedshiftOnPostgres(request.getfixturevalue("postgres_url"), lake=LakeStorage(request.getfixturevalue("s3_lake_url")), iam_role=ROLE)
    redshift.copies = []
    return redshift


def test_a_warehouse_load_scoped_to_symbols_replaces_only_their_rows(engine):
    from stock_assets_tests.test_warehouse import JAN, as_rows, rows
    from stock_assets_tests.test_warehouse import bars as synthetic

    every = synthetic(JAN, ("AAPL", "MSFT", "IBM"))
    lake = getattr(engine, "lake", None)  # Redshift COPYs the window's rows from the lake's files
    if lake:
        layout.write_sessions(lake, "lake/deduped", every, JAN)
    engine.replace_window("prices", every, JAN[0], JAN[-1], lake_prefix="lake/deduped" if lake else None)
    ibm = synthetic(JAN, ("IBM",)).drop_columns(["ingested_at"])  # a new fetch of IBM: its ingested_at moves
    ibm = ibm.append_column("ingested_at", pa.repeat(pa.scalar(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)), ibm.num_rows))
    if lake:
        layout.write_sessions(lake, "lake/deduped", ibm, JAN, symbols=["IBM"])
    assert engine.replace_window("prices", ibm.select(every.column_names), JAN[0], JAN[-1],
                                 lake_prefix="lake/deduped" if lake else None, symbols=["IBM"]) == ibm.num_rows  # fmt: skip
    others = every.filter(pc.invert(pc.equal(every["symbol"], "IBM")))
    assert rows(engine, where="symbol <> 'IBM'") == as_rows(others)  # untouched, ingested_at included
    assert {r[-1] for r in rows(engine, where="symbol = 'IBM'", drop=tuple(c for c in every.column_names if c != "ingested_at"))} == {dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}
    with pytest.raises(WarehouseLoadError, match="outside the window's"):  # a row of another symbol would survive its own window's reload
        engine.replace_window("prices", every, JAN[0], JAN[-1], symbols=["IBM"])

    # dq_report has no symbol: a window's rows carry its scope, and replace that scope's only.
    if lake:
        return  # dq_report's scope is the same SQL (ddl.window_sql) on PostgreSQL, just above
    report = session_rows("prices_complete", "WARN", "deduped_prices", JAN[:1], {}, {})
    scoped = lambda scope: report.set_column(10, "scope", pa.array([scope]))
    engine.replace_window("dq_report", scoped("universe"), JAN[0], JAN[0], scope="universe")
    engine.replace_window("dq_report", scoped("IBM"), JAN[0], JAN[0], scope="IBM")
    engine.replace_window("dq_report", scoped("IBM"), JAN[0], JAN[0], scope="IBM")
    assert sorted(r["scope"] for r in engine.query("SELECT scope FROM dq_report").to_pylist()) == ["IBM", "universe"]


# --- the whole graph: a symbol added with --symbols, a symbol removed from the universe -------





MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
FIRST, LAST = "2019-06-24", "2019-06-28"
LAKE_TABLES = ("lake/prices", "lake/deduped", "lake/indicators", "lake/dq_report")
WAREHOUSE_TABLES = ("prices", "indicators", "dq_report")


@pytest.fixture
def alphavantage(settings, fake_api, monkeypatch):
    """Alpha Vantage over HTTP (the loopback server), answering MSFT's recorded series for any symbol asked."""
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "SCOPE-KEY")
    for symbol in ("MSFT", "IBM", "AAPL"):
        fake_api.route("/query", MSFT_2019.replace(b'"MSFT"', f'"{symbol}"'.encode()), symbol=symbol)

    def universe(*symbols: str):
        return dataclasses.replace(settings, provider="alphavantage", symbols=symbols, provider_base_url=fake_api.url,
                                   requests_per_minute=6000, http_retries=1, http_backoff_seconds=0.01)  # fmt: skip

    return universe


def lake_rows(settings, prefix: str, keep) -> list[dict]:
    """A lake table's rows that `keep` (a row -> bool) keeps, in one order, every column (ingested_at too)."""
    storage = LakeStorage(settings.lake_url)
    table = delta.read_window(storage, prefix, [dt.date(2019, 1, 2) + dt.timedelta(days=d) for d in range(365)], schema=None)
    rows = [r for r in table.to_pylist() if keep(r)]
    return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))


def warehouse_rows(settings, table: str, where: str) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY ALL").fetchall()


def snapshot(settings, not_symbol: str) -> dict:
    """Every layer's rows but `not_symbol`'s (dq_report: the universe's window's rows), and raw/ and landing/ files with their bytes."""
    def others(row: dict) -> bool:
        return row["symbol"] != not_symbol if "symbol" in row else row.get("scope") in (None, "universe")

    state = {prefix: lake_rows(settings, prefix, others) for prefix in LAKE_TABLES}
    for table in WAREHOUSE_TABLES:
        where = "scope IS NULL OR scope = 'universe'" if table == "dq_report" else f"symbol <> '{not_symbol}'"
        state[table] = warehouse_rows(settings, table, where)
    storage = LakeStorage(settings.lake_url)
    state["files"] = {p: storage.read_bytes(p) for top in ("raw", "landing") for p in storage.list_files(top) if f"__{not_symbol}__" not in p}
    return state


@pytest.mark.slow
def test_a_symbol_added_with_symbols_then_one_removed_from_the_universe(alphavantage, fake_api, instance):
    """AAPL joins with a window scoped to it: every other symbol's rows stay identical in every
    layer, ingested_at included, and only AAPL is asked for. Its series lacks the window's last
    two sessions: completeness names AAPL there, judged on the window's symbols only. Then IBM
    leaves the universe: a window of the new universe neither fetches, expects nor deletes it."""
    assert materialize_range(defs_for(alphavantage("MSFT", "IBM")), FIRST, LAST, instance).success
    before = snapshot(alphavantage("MSFT", "IBM"), "AAPL")
    assert all(before[t] for t in (*LAKE_TABLES, *WAREHOUSE_TABLES)), "every layer holds rows to compare"
    asked = len(fake_api.requests)

    series = json.loads(MSFT_2019)
    series["Time Series (Daily)"] = {d: b for d, b in series["Time Series (Daily)"].items() if d <= "2019-06-26"}
    fake_api.route("/query", json.dumps(series).replace('"MSFT"', '"AAPL"').encode(), symbol="AAPL")
    settings = alphavantage("MSFT", "IBM", "AAPL")
    result = materialize_range(defs_for(settings), FIRST, LAST, instance, symbols=("AAPL",))
    assert result.success
    assert [r.query["symbol"] for r in fake_api.requests[asked:]] == ["AAPL"]  # one request, for the new symbol only
    after = snapshot(settings, "AAPL")
    for layer in before:
        kept = {f: after[layer].get(f) for f in before[layer]} if layer == "files" else after[layer]  # new files are AAPL's
        assert kept == before[layer], f"{layer}: another symbol's rows changed"
    new = [b for f, b in after["files"].items() if f not in before["files"]]
    assert new and all(b"MSFT" not in b and b"IBM" not in b for b in new)  # AAPL's own raw and landing files
    assert len(warehouse_rows(settings, "prices", "symbol = 'AAPL'")) == len(warehouse_rows(settings, "indicators", "symbol = 'AAPL'")) == 3
    published = json.loads(LakeStorage(settings.lake_url).read_bytes("published/LATEST"))
    assert published["symbols"] == ["AAPL"] and published["window"] == [FIRST, LAST]  # says whose rows the version replaced
    [complete] = [e for e in result.get_asset_check_evaluations() if e.check_name == "prices_complete"]
    assert not complete.passed and complete.severity == dg.AssetCheckSeverity.WARN  # AAPL trades in the window: a gap, not an outage
    missing = " ".join(r[7] for r in warehouse_rows(settings, "dq_report", "check_name = 'prices_complete' AND scope = 'AAPL'"))
    assert "AAPL@2019-06-27" in missing and "AAPL@2019-06-28" in missing and "MSFT" not in missing and "IBM" not in missing

    # IBM leaves the universe; the same window runs again for MSFT and AAPL (their payloads are reused from raw/).
    ibm = {t: lake_rows(settings, t, lambda r: r.get("symbol") == "IBM") for t in ("lake/prices", "lake/deduped", "lake/indicators")}
    ibm |= {t: warehouse_rows(settings, t, "symbol = 'IBM'") for t in ("prices", "indicators")}
    assert all(ibm.values())
    asked = len(fake_api.requests)
    smaller = alphavantage("MSFT", "AAPL")
    result = materialize_range(defs_for(smaller), FIRST, LAST, instance)
    assert result.success
    assert all(r.query["symbol"] != "IBM" for r in fake_api.requests[asked:])  # no longer fetched
    for table, rows in ibm.items():
        now = lake_rows(smaller, table, lambda r: r.get("symbol") == "IBM") if table.startswith("lake/") else warehouse_rows(smaller, table, "symbol = 'IBM'")
        assert now == rows, f"{table}: IBM's history changed"
    judged = " ".join(r[7] for r in warehouse_rows(smaller, "dq_report", "check_name = 'prices_complete' AND scope = 'universe'"))
    assert "AAPL@2019-06-27" in judged and "IBM" not in judged  # no longer expected

    # docs/operations.md's way to delete a removed symbol's rows, as written there.
    text = (ROOT / "docs" / "operations.md").read_text()
    snippet = text.split(".venv/bin/python - <<'PY'\n", 1)[1].split("PY\n", 1)[0]
    subprocess.run([sys.executable, "-c", snippet.replace('home = ".stock_assets"', f'home = "{smaller.home}"')], check=True)
    for table in ("lake/prices", "lake/deduped", "lake/indicators"):
        assert lake_rows(smaller, table, lambda r: r["symbol"] == "IBM") == [] and lake_rows(smaller, table, lambda r: r["symbol"] == "MSFT")
    assert warehouse_rows(smaller, "prices", "symbol = 'IBM'") == warehouse_rows(smaller, "indicators", "symbol = 'IBM'") == []


@pytest.mark.slow
def test_cli_backfill_with_symbols_runs_a_window_of_those_symbols_only(tmp_path):
    from stock_assets_tests.test_cli import environment

    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="AAPL,MSFT")
    command = [sys.executable, "-m", "stock_assets.cli", "backfill", "--start", "2024-03-04", "--end", "2024-03-06"]
    bad = subprocess.run([*command, "--symbols", "msft,no symbol"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--symbols='msft,no symbol': invalid symbol 'NO SYMBOL'" in bad.stderr

    done = subprocess.run([*command, "--symbols", "msft"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "symbols=MSFT (only these: other symbols' rows untouched)" in done.stdout
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT symbol, count(*) FROM prices GROUP BY ALL").fetchall() == [("MSFT", 3)]
    os.environ["DAGSTER_HOME"], saved = str(tmp_path / "dagster"), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            [run] = instance.get_runs()
            assert run.tags["stock_assets/symbols"] == "MSFT"  # as the UI shows it, and as a re-execution keeps it
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)
