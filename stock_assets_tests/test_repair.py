"""Damaged lake tables after a real run: a log entry, a checkpoint or a data file. Every later
read and run names the table and the file and the command that rebuilds it; the rebuild moves
the damaged table aside, writes it again from landing/ (or the warehouse), and a re-run then
matches a clean run."""

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from stock_assets import cli
from stock_assets.cli import materialize_range
from stock_assets.lake import delta, repair
from stock_assets.lake.damage import DamagedTableError
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.settings import Settings
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.conftest import SYMBOLS, defs_for

FIRST, LAST = "2023-12-27", "2024-01-04"  # two years' partitions: the rebuild goes a year at a time
VARYING = {"ingested_at", "checked_at", "run_id", "loaded_at"}  # differ between any two runs
WAREHOUSE_TABLES = ("prices", "dq_report", "indicators", "indicators_loads")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A home after one clean run of the graph over FIRST..LAST (copied, never changed)."""
    home = tmp_path_factory.mktemp("clean")
    settings = Settings(home=home, provider="synthetic", symbols=SYMBOLS, interval="1d", start="2012-01-03", lake_url=str(home / "lake"),
                        warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}", synthetic_faults=(), step_retry_delay_seconds=0.2)  # fmt: skip
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_range(defs_for(settings), FIRST, LAST, instance).success
    return home


def home_like(clean: Path, settings, tmp_path: Path):
    """A copy of the clean home at tmp_path/home; its settings."""
    home = tmp_path / "home"
    shutil.copytree(clean, home)
    latest = home / "lake" / "published" / "LATEST"  # names the table by its full path: the copy's own
    latest.write_text(latest.read_text().replace(str(clean), str(home)))
    return dataclasses.replace(settings, home=home, lake_url=str(home / "lake"), warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}")


def damage(storage: LakeStorage, table: str, kind: str) -> str:
    """Damage `table` as a disk or a careless hand would; the file damaged, relative to the table."""
    if kind == "log entry":
        path = max(p for p in storage.list_files(f"{table}/_delta_log") if p.endswith(".json"))
        storage.write_bytes(path, storage.read_bytes(path)[:90])  # truncated mid-record
    elif kind == "checkpoint":
        delta.open_table(storage, table).create_checkpoint()
        path = next(p for p in storage.list_files(f"{table}/_delta_log") if p.endswith(".checkpoint.parquet"))
        storage.write_bytes(path, b"garbage" * 10)
    elif kind == "data file":
        path = f"{table}/{delta.current_files(storage, table)[-1]}"
        storage.write_bytes(path, storage.read_bytes(path)[:200])  # truncated: no footer
    elif kind == "data file deleted":
        path = f"{table}/{delta.current_files(storage, table)[-1]}"
        storage.delete(path)
    return path[len(table) + 1 :]


def test_chunks_end_with_the_year_and_at_the_limit():
    days = [dt.date(2023, 12, 27), dt.date(2023, 12, 28), dt.date(2023, 12, 29), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    assert list(repair.chunks(dict.fromkeys(days, 10), 20)) == [days[:2], days[2:3], days[3:]]
    assert list(repair.chunks({days[0]: 50}, 20)) == [days[:1]]  # one session over the limit is still read, alone
    assert list(repair.chunks({}, 20)) == []


@pytest.mark.slow
def test_nothing_to_rebuild_from_leaves_the_table_as_it_is(clean, settings, tmp_path):
    settings = home_like(clean, settings, tmp_path)
    storage, empty = LakeStorage(settings.lake_url), warehouse_for_url(f"duckdb:///{tmp_path / 'empty.duckdb'}")
    files = storage.list_files("lake/dq_report")
    with pytest.raises(ValueError, match="warehouse table dq_report holds no session to rebuild .*lake/dq_report from"):
        repair.rebuild_table(storage, "lake/dq_report", empty)
    assert storage.list_files("lake/dq_report") == files and not storage.list_dirs(repair.DAMAGED)


def lake_rows(storage: LakeStorage, table: str, drop=VARYING) -> pa.Table:
    rows = delta.dataset(storage, table).to_table()
    rows = rows.drop_columns([c for c in rows.column_names if c in drop])
    return rows.sort_by([(c, "ascending") for c in rows.column_names])


def warehouse_rows(settings, table: str) -> list:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        columns = [c for (c,) in con.execute(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'").fetchall() if c not in VARYING]
        return con.execute(f'SELECT {", ".join(columns)} FROM "{table}" ORDER BY ALL').fetchall()


def failure_messages(result) -> str:
    text = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                text.append(error.message)
                error = error.cause
    return "\n".join(text)


CASES = [  # (table, damage, how the rebuild is started); each later write fails naming the file, the first in a run of the graph
    ("lake/deduped", "log entry", "cli"),
    ("lake/prices", "checkpoint", "job"),
    ("lake/indicators", "data file", "function"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("table", "kind", "started"), CASES)
def test_a_damaged_table_is_named_rebuilt_and_a_rerun_matches_a_clean_run(table, kind, started, clean, settings, instance, tmp_path, monkeypatch):
    settings = home_like(clean, settings, tmp_path)
    storage, clean_storage = LakeStorage(settings.lake_url), LakeStorage(str(clean / "lake"))
    runs_first = (table, kind, started) == CASES[0]  # a failed run lands the window again: new ingestion times
    before = lake_rows(storage, table, drop=VARYING if runs_first else ())
    file = damage(storage, table, kind)
    damaged_files = storage.list_files(table)
    uri = storage.uri(table)
    expected = f"lake table {uri} is damaged: {file}: "
    sessions = sessions_between(settings.start, FIRST, LAST)

    with pytest.raises(DamagedTableError, match="^" + expected.replace(".", r"\.")) as raised:
        delta.read_window(storage, table, sessions, schema=None)
    assert raised.value.file == file and f"`python -m stock_assets.cli rebuild --table {table}`" in str(raised.value)
    assert "<unknown>" not in str(raised.value) and "\n" not in str(raised.value)  # no Rust backtrace
    if runs_first:
        result = materialize_range(defs_for(settings), FIRST, LAST, instance)  # every later run: the same clear error
        assert not result.success and expected in failure_messages(result)
    else:
        with pytest.raises(DamagedTableError, match="^" + expected.replace(".", r"\.")):
            delta.write_window(storage, table, delta.read_window(clean_storage, table, sessions, schema=None), sessions)

    if started == "cli":
        monkeypatch.setenv("STOCK_ASSETS_HOME", str(settings.home))
        monkeypatch.setenv("STOCK_ASSETS_SYMBOLS", ",".join(settings.symbols))
        assert cli.main(["rebuild", "--table", table]) == 0
    elif started == "job":
        job = defs_for(settings).resolve_job_def("lake_repair_job")
        assert job.execute_in_process(run_config={"ops": {"rebuild_lake_table": {"config": {"table": table}}}}, instance=instance).success
    else:
        monkeypatch.setattr(repair, "CHUNK_ROWS", 2 * len(settings.symbols))  # a few sessions at a time
        report = repair.rebuild_table(storage, table, warehouse_for_url(settings.warehouse_url))
        assert report["rows"] == before.num_rows and report["sessions"] == len(sessions)
        assert report["version"] == 3  # four commits: 2 + 1 sessions of 2023, 2 + 1 of 2024 (never across a year)

    moved = [d for d in storage.list_dirs(repair.DAMAGED) if d.startswith(table.rsplit("/", 1)[1] + "-")]
    assert len(moved) == 1  # the damaged table kept as it was, damage and all
    aside = f"{repair.DAMAGED}/{moved[0]}"
    assert storage.list_files(aside) == [aside + p[len(table) :] for p in damaged_files]
    if table == "lake/deduped":  # production's version lives on in the moved copy until a checked run publishes again
        assert json.loads(storage.read_bytes("published/LATEST"))["table"] == storage.uri(aside)
    assert lake_rows(storage, table, drop=VARYING if runs_first else ()).equals(before)  # as it was
    assert {p.split("/")[0] for p in delta.current_files(storage, table)} == {"year=2023", "year=2024"}

    if table == "lake/prices":
        return  # rebuilt from landing as lake/deduped is, whose case re-runs the graph
    assert materialize_range(defs_for(settings), FIRST, LAST, instance).success
    for name in repair.TABLES:
        assert lake_rows(storage, name).equals(lake_rows(clean_storage, name)), name
    clean_settings = dataclasses.replace(settings, home=clean)
    for name in WAREHOUSE_TABLES:
        assert warehouse_rows(settings, name) == warehouse_rows(clean_settings, name), name
    latest = json.loads(storage.read_bytes("published/LATEST"))
    assert latest["table"] == storage.uri("lake/deduped")  # the re-run published the rebuilt table


@pytest.mark.slow
def test_on_s3_a_deleted_data_file_is_named_and_the_table_rebuilt(clean, settings, s3_lake_url, instance):
    storage, clean_storage = LakeStorage(s3_lake_url), LakeStorage(str(clean / "lake"))
    for path in clean_storage.list_files(""):  # the clean run's lake, copied to the bucket
        body = clean_storage.read_bytes(path)
        storage.write_bytes(path, body.replace(str(clean / "lake").encode(), s3_lake_url.encode()) if path == "published/LATEST" else body)
    file = damage(storage, "lake/deduped", "data file deleted")
    sessions = sessions_between(settings.start, FIRST, LAST)
    with pytest.raises(DamagedTableError) as raised:
        delta.read_window(storage, "lake/deduped", sessions)
    assert str(raised.value).startswith(f"lake table {s3_lake_url}/lake/deduped is damaged: {file}: missing")

    report = repair.rebuild_table(storage, "lake/deduped")
    assert report["moved_to"].startswith(f"{s3_lake_url}/lake/.damaged/deduped-") and report["production_points_at_moved_copy"]
    aside = report["moved_to"][len(s3_lake_url) + 1 :]
    assert len(storage.list_files(aside)) == len(clean_storage.list_files("lake/deduped")) - 1  # kept, all but the file deleted
    assert lake_rows(storage, "lake/deduped", drop=()).equals(lake_rows(clean_storage, "lake/deduped", drop=()))  # as it was
    on_s3 = dataclasses.replace(settings, lake_url=s3_lake_url)
    assert materialize_range(defs_for(on_s3), FIRST, LAST, instance).success
    for name in repair.TABLES:
        assert lake_rows(storage, name).equals(lake_rows(clean_storage, name)), name
