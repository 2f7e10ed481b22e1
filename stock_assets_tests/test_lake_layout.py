"""The lake layout on a local folder: raw, landing CSV and Hive Parquet, written and read back.

(The same functions run against a real S3 API in the S3 tests.)
"""

import datetime as dt

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.schema import conform
from stock_assets.seed_csv import LandingFormatError, from_landing_csv, to_landing_csv

SESSIONS = sessions_between("2015-01-02", "2024-03-01", "2024-03-08")


@pytest.fixture
def lake(tmp_path) -> LakeStorage:
    return LakeStorage(str(tmp_path / "lake"))


@pytest.fixture
def bars() -> pa.Table:
    provider = SyntheticProvider()
    return pa.concat_tables([parse_synthetic(p) for p in provider.fetch(["AAPL", "BRK.B"], SESSIONS, "1d").payloads])


def test_raw_payloads_round_trip_byte_for_byte(lake):
    payloads = SyntheticProvider().fetch(["AAPL", "BRK.B"], SESSIONS, "1d").payloads
    layout.write_raw(lake, payloads, SESSIONS[0], SESSIONS[-1])
    back = layout.read_raw(lake, SESSIONS[0], SESSIONS[-1])
    assert [(p.symbol, p.body, p.ingested_at) for p in back] == [(p.symbol, p.body, p.ingested_at) for p in payloads]
    # A sub-window finds the payloads of the window that covers it.
    assert {p.symbol for p in layout.read_raw(lake, SESSIONS[2], SESSIONS[3])} == {"AAPL", "BRK.B"}
    # A re-fetch replaces the window's payloads instead of piling up.
    layout.write_raw(lake, SyntheticProvider().fetch(["AAPL", "BRK.B"], SESSIONS, "1d").payloads, SESSIONS[0], SESSIONS[-1])
    assert len(lake.list_files(f"raw/{SESSIONS[0]}_{SESSIONS[-1]}")) == 2


def test_landing_csv_is_seed_format_and_round_trips_exactly(bars):
    body = to_landing_csv(bars)
    assert body.decode().splitlines()[0].startswith("symbol,date,open,high,low,close,volume,")
    assert from_landing_csv(body, source="x", ingested_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).equals(bars)


def test_a_seed_only_csv_gets_daily_defaults():
    body = b"symbol,date,open,high,low,close,volume\nKO,2012-08-13,40.1,40.5,39.9,40.2,1000\n"
    moment = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    row = from_landing_csv(body, source="seed", ingested_at=moment).to_pylist()[0]
    assert row["session"] == dt.date(2012, 8, 13)
    assert row["ts"] == dt.datetime(2012, 8, 13, 4, tzinfo=dt.UTC)  # 00:00 New York, summer time
    assert (row["interval"], row["source"], row["ingested_at"], row["adj_close"]) == ("1d", "seed", moment, None)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"symbol,date,open\nKO,2012-08-13,1\n", "missing seed-format columns"),
        (b"symbol,date,open,high,low,close,volume\nKO,not-a-date,1,1,1,1,1\n", "cannot parse"),
    ],
)
def test_a_malformed_landing_file_is_a_named_error(body, message):
    with pytest.raises(LandingFormatError, match=f"landing/2024-01-02/bad.csv: {message}"):
        from_landing_csv(body, source="x", ingested_at=dt.datetime.now(dt.UTC), name="landing/2024-01-02/bad.csv")


def test_landing_by_date_prefix_replaces_its_window(lake, bars):
    layout.write_landing(lake, bars, SESSIONS)
    files = layout.landing_files(lake, SESSIONS)
    assert [f.split("/")[1] for f in files] == [str(s) for s in SESSIONS]
    assert lake.list_files("landing") == sorted(files + [layout.record_path(f) for f in files])
    assert layout.read_landing(lake, SESSIONS).sort_by([("session", "ascending"), ("symbol", "ascending")]).equals(
        bars.sort_by([("session", "ascending"), ("symbol", "ascending")])
    )
    layout.write_landing(lake, bars.slice(0, 0), SESSIONS[:1])
    assert lake.list_files(f"landing/{SESSIONS[0]}") == []


def test_landing_rows_come_from_the_records_of_intact_files_and_from_the_rows_of_the_rest(lake, bars):
    import json

    layout.write_landing(lake, bars, SESSIONS)
    expected = {s: 2 for s in SESSIONS}
    assert layout.inspect_landing(lake, SESSIONS) == (expected, {})
    first, second = layout.landing_files(lake, SESSIONS)[:2]
    record = json.loads(lake.read_bytes(layout.record_path(first)))
    assert record["sessions"] == {str(SESSIONS[0]): 2}
    del record["sessions"]  # a record written before records counted sessions: the file is parsed
    lake.write_bytes(layout.record_path(first), json.dumps(record).encode())
    body = lake.read_bytes(second)
    lake.write_bytes(second, body[: body.rindex(b"\n", 0, len(body) - 1) + 1])  # its last row cut off
    rows, damaged = layout.inspect_landing(lake, SESSIONS)
    assert rows == expected | {SESSIONS[1]: 1}
    assert list(damaged) == [lake.uri(second)] and "changed since written: 1 rows" in damaged[lake.uri(second)]


def test_a_window_is_one_delta_commit_and_a_rerun_is_idempotent(lake, bars):
    written = layout.write_sessions(lake, "lake/prices", bars, SESSIONS)
    assert written == [f"{lake.uri('lake/prices')}@v0"]
    first = layout.read_sessions(lake, "lake/prices", SESSIONS)
    assert layout.write_sessions(lake, "lake/prices", bars, SESSIONS) == [f"{lake.uri('lake/prices')}@v1"]
    back = layout.read_sessions(lake, "lake/prices", SESSIONS)
    assert back.equals(first) and back.num_rows == bars.num_rows and back.schema == bars.schema  # same data, same table
    assert len(delta.current_files(lake, "lake/prices")) == 1  # the window's month: one file, not one per write
    assert len(layout.read_sessions(lake, "lake/prices", SESSIONS[1:2])) == 2
    # A smaller window replaces exactly its sessions: the others stay as they were.
    layout.write_sessions(lake, "lake/prices", bars.slice(0, 0), SESSIONS[1:2])
    assert layout.read_sessions(lake, "lake/prices", SESSIONS).num_rows == bars.num_rows - 2
    assert delta.read_window(lake, "lake/prices", SESSIONS, version=1).equals(first)  # "as of" an earlier version


def test_an_interrupted_write_leaves_no_visible_file(lake):
    def producer_dies_midway():
        yield b"PAR1" + b"x" * 1_000_000
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        lake.write_chunks("lake/prices/session=2024-03-01/part-0.parquet", producer_dies_midway())
    assert lake.list_files("lake") == []
    everything = lake.fs.get_file_info(pafs.FileSelector(lake.path("lake"), recursive=True, allow_not_found=True))
    assert [i.path for i in everything if i.type == pafs.FileType.File] == []  # no temp file left either


def test_the_io_manager_hands_a_run_what_a_read_of_the_lake_returns(lake, bars):
    """Within a run the Parquet window just written is handed on in memory; it must be exactly
    what reading the lake gives (a fresh IO manager, as another process of the run would have)."""
    import dagster as dg

    from stock_assets.lake.io_manager import LakeIOManager, LakeResource

    shuffled = bars.take(pa.array(list(range(bars.num_rows))[::-1]))  # the asset's own row order
    extra = shuffled.slice(0, 2).set_column(1, "session", pa.array([dt.date(2024, 3, 11)] * 2, pa.date32()))
    output = pa.concat_tables([shuffled, extra])  # rows outside the window are neither written nor handed on
    keys = [str(s) for s in SESSIONS]
    partitions, window = dg.StaticPartitionsDefinition(keys), dg.PartitionKeyRange(keys[0], keys[-1])
    metadata = {"lake_path": "lake/prices"}
    upstream = dg.build_output_context(asset_key="lake_parquet", definition_metadata=metadata)

    def input_context():
        return dg.build_input_context(asset_key="lake_parquet", upstream_output=upstream, asset_partitions_def=partitions,
                                      asset_partition_key_range=window)

    run_manager = LakeIOManager(lake=LakeResource(url=lake.url))
    run_manager.handle_output(dg.build_output_context(asset_key="lake_parquet", definition_metadata=metadata,
                                                      asset_partitions_def=partitions, asset_partition_key_range=window), output)
    handed = run_manager.load_input(input_context())
    read = LakeIOManager(lake=LakeResource(url=lake.url)).load_input(input_context())
    assert read.num_rows == bars.num_rows
    assert handed.equals(read)
    # Handed on, not read: with the table gone the run's own manager still answers.
    for path in lake.list_files("lake/prices"):
        lake.delete(path)
    assert run_manager.load_input(input_context()).equals(read)


def test_landing_is_handed_on_only_while_the_window_holds_just_the_files_written(lake, bars):
    import dagster as dg

    from stock_assets.lake.io_manager import LakeIOManager, LakeResource

    keys = [str(s) for s in SESSIONS]
    partitions, window = dg.StaticPartitionsDefinition(keys), dg.PartitionKeyRange(keys[0], keys[-1])
    metadata = {"lake_path": "landing"}
    upstream = dg.build_output_context(asset_key="landing_csv", definition_metadata=metadata)

    def load(manager):
        return manager.load_input(dg.build_input_context(asset_key="landing_csv", upstream_output=upstream,
                                                         asset_partitions_def=partitions, asset_partition_key_range=window))

    run_manager = LakeIOManager(lake=LakeResource(url=lake.url))
    run_manager.handle_output(dg.build_output_context(asset_key="landing_csv", definition_metadata=metadata,
                                                      asset_partitions_def=partitions, asset_partition_key_range=window), bars)
    read = load(LakeIOManager(lake=LakeResource(url=lake.url)))
    handed = load(run_manager)
    assert read.num_rows == bars.num_rows and delta.sort_rows(handed).equals(delta.sort_rows(read))  # the same rows
    assert handed.equals(conform(bars))  # payloads come symbol by symbol: handed on in the lake's order, as they came
    shuffled = bars.take(pa.array(list(range(bars.num_rows))[::-1]))  # any other order: handed on as read_landing reads it
    run_manager.handle_output(dg.build_output_context(asset_key="landing_csv", definition_metadata=metadata,
                                                      asset_partitions_def=partitions, asset_partition_key_range=window), shuffled)
    assert load(run_manager).equals(read)
    # A file another system dropped into the window meanwhile: the run reads the lake, drop included.
    lake.write_bytes(f"landing/{SESSIONS[0]}/ext-0123.csv", to_landing_csv(bars.slice(0, 1)))
    assert load(run_manager).num_rows == bars.num_rows + 1
