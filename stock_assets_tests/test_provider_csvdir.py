"""The csvdir provider on the recorded zipline csvdir files, from a local folder and from a real S3
API (moto on loopback) with the same code: a window's bars are the file's lines for those
sessions, value for value; zipline's dividend and split columns land; a missing or malformed
file fails that symbol by name and the others still come back; and the whole graph run with
provider=csvdir lands the rows in the warehouse."""

import csv
import dataclasses
import datetime as dt
import io

import dagster as dg
import duckdb
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.providers.csvdir import CsvDirProvider
from stock_assets.providers.csvdir_format import parse_csvdir
from stock_assets.providers.errors import MalformedPayloadError
from stock_assets.providers.registry import parse_payload
from stock_assets.providers.resource import provider_resource
from stock_assets_tests.conftest import defs_for, fixture_bytes

ZIPLINE_AAPL = fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv")  # no symbol column
SEED = {s: fixture_bytes(f"csv/seed_format_{s}_2012-2014_zipline_csvdir.csv") for s in ("MSFT", "IBM", "KO")}
# AAPL's 2014-05-08 dividend (0.47) and 2014-06-09 7:1 split both fall in this window.
FIRST, LAST = "2014-05-01", "2014-06-30"
SESSIONS = sessions_between("2012-01-03", FIRST, LAST)
MOMENT = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)


def lines_between(body: bytes, first: str, last: str) -> list[dict]:
    """The file's own rows dated first..last, read with the csv module, not with the code under test."""
    rows = csv.DictReader(io.StringIO(body.decode()))
    return [row for row in rows if first <= row["date"] <= last]


def values(rows: list[dict]) -> list[tuple]:
    return [(dt.date.fromisoformat(r["date"]), float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), int(r["volume"])) for r in rows]


def bar_values(bars) -> list[tuple]:
    return [(b["session"], b["open"], b["high"], b["low"], b["close"], b["volume"]) for b in bars.to_pylist()]


def archive(url: str, files: dict[str, bytes]) -> LakeStorage:
    storage = LakeStorage(url)
    for name, body in files.items():
        storage.write_bytes(name, body)
    return storage


RECORDED = {"aapl.csv": ZIPLINE_AAPL, "MSFT.csv": SEED["MSFT"], "IBM.csv": SEED["IBM"]}  # AAPL spelled in lower case


@pytest.fixture(params=["local", "s3"])
def archive_url(request, tmp_path) -> str:
    """Where the archive lives: a local folder, or a prefix in the moto bucket."""
    if request.param == "local":
        return str(tmp_path / "archive")
    return f"{request.getfixturevalue('s3_lake_url')}/archive"


def test_the_window_bars_are_the_files_lines_for_those_sessions(archive_url):
    provider = CsvDirProvider(archive(archive_url, RECORDED), clock=lambda: MOMENT)
    result = provider.fetch(["AAPL", "MSFT", "IBM"], SESSIONS, "1d")
    assert result.failures == {} and [p.symbol for p in result.payloads] == ["AAPL", "MSFT", "IBM"]

    for payload in result.payloads:
        source = ZIPLINE_AAPL if payload.symbol == "AAPL" else SEED[payload.symbol]
        # raw/ keeps the header and the window's lines, each byte for byte (MSFT's file has CRLF endings).
        lines = source.splitlines(keepends=True)
        assert payload.body == lines[0] + b"".join(line for line in lines[1:] if FIRST <= line.split(b",")[0 if payload.symbol == "AAPL" else 1].decode() <= LAST)
        assert (payload.provider, payload.interval, payload.extension) == ("csvdir", "1d", "csv")
        assert (payload.first_session, payload.last_session, payload.ingested_at) == (SESSIONS[0], SESSIONS[-1], MOMENT)

        bars = parse_payload(payload)
        expected = values(lines_between(source, FIRST, LAST))
        assert bar_values(bars) == expected and len(expected) == len(SESSIONS) == 42
        assert set(bars["symbol"].to_pylist()) == {payload.symbol} and set(bars["source"].to_pylist()) == {"csvdir"}
        assert bars["ts"][0].as_py() == dt.datetime(2014, 5, 1, 4, tzinfo=dt.UTC)  # 00:00 New York


def test_zipline_dividend_and_split_become_the_schemas_dividend_and_split_coefficient(archive_url):
    provider = CsvDirProvider(archive(archive_url, RECORDED), clock=lambda: MOMENT)
    [aapl, msft] = provider.fetch(["AAPL", "MSFT"], SESSIONS, "1d").payloads
    bars = {b["session"]: b for b in parse_payload(aapl).to_pylist()}
    assert bars[dt.date(2014, 6, 9)]["split_coefficient"] == 7.0  # 7-for-1, as the file says it
    assert bars[dt.date(2014, 5, 8)]["dividend"] == 0.47
    rows = lines_between(ZIPLINE_AAPL, FIRST, LAST)
    assert [(b["dividend"], b["split_coefficient"]) for b in bars.values()] == [(float(r["dividend"]), float(r["split"])) for r in rows]
    assert sum(1 for b in bars.values() if b["split_coefficient"] != 1.0) == 1 and sum(1 for b in bars.values() if b["dividend"]) == 1
    # The seed format carries neither: null, not a made-up 0 or 1.
    assert {(b["dividend"], b["split_coefficient"]) for b in parse_payload(msft).to_pylist()} == {(None, None)}


def test_a_missing_symbol_and_a_malformed_file_fail_by_name_and_the_others_come_back(archive_url):
    good = b"IBM,2013-03-01,200.649994,202.940002,199.360001,202.910004,3308300\r\n"  # line 292, far outside the window
    assert SEED["IBM"].splitlines(keepends=True)[291] == good
    broken = SEED["IBM"].replace(good, good.replace(b"202.910004", b"n.a."))  # the whole file is checked
    storage = archive(archive_url, RECORDED | {"IBM.csv": broken})
    result = CsvDirProvider(storage).fetch(["AAPL", "KO", "IBM", "MSFT"], SESSIONS, "1d")

    assert [p.symbol for p in result.payloads] == ["AAPL", "MSFT"]
    assert set(result.failures) == result.permanent == {"KO", "IBM"}
    assert result.failures["KO"] == f"MissingFileError: csvdir KO: no file {storage.uri('KO.csv')} (nor ko.csv)"
    assert result.failures["IBM"] == f"MalformedPayloadError: csvdir IBM: {storage.uri('IBM.csv')}: line 292, column close: 'n.a.' is not a number"
    assert [bar_values(parse_payload(p)) for p in result.payloads] == [values(lines_between(ZIPLINE_AAPL, FIRST, LAST)), values(lines_between(SEED["MSFT"], FIRST, LAST))]


@pytest.mark.parametrize(
    "body, says",
    [
        (b"symbol,date,open,high,low,close,volume\nIBM,2014-06-02,1,2,0.5,1.5,100\nIBM,2014-06-03,1,2,0.5,abc,100\n", "line 3, column close: 'abc' is not a number"),
        (b"symbol,date,open,high,low,close,volume\r\n\r\nIBM,2014-06-02,1,2,0.5,1.5\r\n", "line 3: 6 fields where the header has 7"),
        (b"date,open,high,low,close,volume,dividend,split\n2014-06-02,1,2,0.5,1.5,100,0.0,1.0\n2014-6-3,1,2,0.5,1.5,100,0.0,1.0\n", "line 3, column date: '2014-6-3' is not a date YYYY-MM-DD"),
        (b"date,open,high,low,close,volume,dividend,split\n2014-06-02,1,2,0.5,1.5,100,0.0,seven\n", "line 2, column split_coefficient: 'seven' is not a number"),
        (b"date,open,high,low,close,volume\n2014-06-02,1,2,0.5,1.5,100\n,1,2,0.5,1.5,100\n", "line 3, column date: '' is not a date YYYY-MM-DD"),
        (b"symbol,date,open,high,low,close,volume\nIBM,2014-06-02,1,2,0.5,1.5,100\nMSFT,2014-06-03,1,2,0.5,1.5,100\n", "line 3, column symbol: 'MSFT' in the file of IBM"),
        (b"symbol,date,open,high,low,close,volume\nIBM,2014-06-02,1,2,0.5,1.5\xff,100\n", "line 2: not UTF-8 text (byte 27)"),
        (b"Date,Open,High,Low,Close\n2014-06-02,1,2,0.5,1.5\n", "line 1 is not a header with date,open,high,low,close,volume: lacks ['volume']"),
        (b"", "line 1 is not a header with date,open,high,low,close,volume: lacks ['date', 'open', 'high', 'low', 'close', 'volume'] in an empty line"),
    ],
)
def test_an_unreadable_file_is_named_with_its_line_and_column(body, says, tmp_path):
    storage = archive(str(tmp_path), {"IBM.csv": body, "MSFT.csv": SEED["MSFT"]})
    result = CsvDirProvider(storage).fetch(["IBM", "MSFT"], SESSIONS, "1d")
    assert result.failures["IBM"].startswith(f"MalformedPayloadError: csvdir IBM: {tmp_path}/IBM.csv: {says}")
    assert result.permanent == {"IBM"} and [p.symbol for p in result.payloads] == ["MSFT"]


def test_empty_values_travel_as_nulls_to_the_quality_checks_and_whole_float_volumes_are_read():
    body = b"Date,Open,High,Low,Close,Adj Close,Volume\n2014-06-02,1,2,0.5,,1.4,75555200.0\n2014-06-03,1,2,0.5,1.5,null,100\n"
    bars = parse_csvdir(body, "IBM", "1d", MOMENT).to_pylist()
    assert [(b["close"], b["adj_close"], b["volume"]) for b in bars] == [(None, 1.4, 75555200), (1.5, None, 100)]
    with pytest.raises(MalformedPayloadError, match="csvdir IBM: IBM.csv: csvdir files hold daily bars, not '5min'"):
        parse_csvdir(body, "IBM", "5min", MOMENT)


def test_a_window_the_file_does_not_cover_a_wrong_interval_and_a_wrong_root_are_permanent_and_named(tmp_path):
    storage = archive(str(tmp_path / "archive"), RECORDED)
    later = sessions_between("2012-01-03", "2015-01-02", "2015-01-09")
    result = CsvDirProvider(storage).fetch(["MSFT"], later, "1d")
    assert result.all_permanent and not result.payloads
    assert result.failures["MSFT"] == (f"NoRowsInWindowError: csvdir MSFT: {storage.uri('MSFT.csv')} has no line dated 2015-01-02..2015-01-09: "
                                       "its lines run 2012-01-03..2014-12-31")

    result = CsvDirProvider(storage).fetch(["MSFT", "IBM"], SESSIONS, "5min")
    assert result.all_permanent and not result.payloads
    assert "STOCK_ASSETS_INTERVAL=5min cannot be served; set STOCK_ASSETS_INTERVAL=1d" in result.failures["IBM"]

    result = CsvDirProvider(LakeStorage(str(tmp_path / "nowhere"))).fetch(["MSFT"], SESSIONS, "1d")
    assert result.all_permanent and f"{tmp_path}/nowhere is no folder, or holds nothing: check STOCK_ASSETS_CSVDIR_URL" in result.failures["MSFT"]


def test_two_spellings_of_one_symbol_are_refused_rather_than_guessed(archive_url):
    storage = archive(archive_url, {"AAPL.csv": ZIPLINE_AAPL, "aapl.csv": ZIPLINE_AAPL})
    result = CsvDirProvider(storage).fetch(["AAPL"], SESSIONS, "1d")
    assert result.permanent == {"AAPL"} and "two files for one symbol, AAPL.csv and aapl.csv" in result.failures["AAPL"]


def test_an_unreachable_bucket_may_pass_on_a_retry(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = CsvDirProvider(LakeStorage("s3://stock-assets-test/archive")).fetch(["MSFT"], SESSIONS, "1d")
    assert result.failures["MSFT"].startswith("ArchiveUnreadableError: csvdir MSFT: cannot list s3://stock-assets-test/archive (STOCK_ASSETS_CSVDIR_URL)")
    assert result.permanent == set()  # the step retry tries again


# --- the whole graph ---------------------------------------------------------------------

GRAPH_FIRST, GRAPH_LAST = "2014-06-02", "2014-06-13"


def prices(settings, symbol: str) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT session, open, high, low, close, volume, dividend, split_coefficient, source FROM prices WHERE symbol = ? ORDER BY session", [symbol]
        ).fetchall()


@pytest.mark.slow
def test_the_whole_graph_with_provider_csvdir_lands_the_files_rows_in_the_warehouse(settings, archive_url, instance):
    # MSFT's archive also has a bar on Saturday 2014-06-07: set aside by landing_csv, never loaded.
    saturday = b"MSFT,2014-06-07,41.0,41.5,40.5,41.2,1000\r\n"
    msft = SEED["MSFT"].replace(b"MSFT,2014-06-09,", saturday + b"MSFT,2014-06-09,", 1)
    broken = SEED["IBM"].replace(b"IBM,2014-06-04,", b"IBM,2014-06-04,oops,", 1)
    storage = archive(archive_url, RECORDED | {"MSFT.csv": msft, "IBM.csv": broken})
    on_csvdir = dataclasses.replace(settings, provider="csvdir", csvdir_url=archive_url)
    assert provider_resource(on_csvdir).client().archive.url == archive_url

    failed = materialize_range(defs_for(on_csvdir), GRAPH_FIRST, GRAPH_LAST, instance)
    assert not failed.success  # IBM's file is bad: the window would lack IBM, so nothing of it is loaded
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = failure.event_specific_data.error.message
    assert failure.step_key == "raw_prices" and "IBM cannot be fetched" in text and "not retried" in text
    assert f"{storage.uri('IBM.csv')}: line " in text and "fields where the header has 7" in text
    assert not failed.get_asset_materialization_events()  # nothing landed, loaded or published
    lake = LakeStorage(on_csvdir.lake_url)
    assert sorted(p.rsplit("/", 1)[1].split("__")[2] for p in lake.list_files("raw")) == ["AAPL", "MSFT"]  # what was read is kept

    # The file is fixed: a re-run reads every file again (reading is free), so IBM lands without `refetch`.
    storage.write_bytes("IBM.csv", SEED["IBM"])
    result = materialize_range(defs_for(on_csvdir), GRAPH_FIRST, GRAPH_LAST, instance)
    assert result.success
    raw = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "raw_prices")
    meta = raw.step_materialization_data.materialization.metadata
    assert (meta["provider"].value, meta["payloads"].value, meta["not_listed_yet"].value) == ("csvdir", 3, "none")
    landing = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "landing_csv")
    assert landing.step_materialization_data.materialization.metadata["bars_set_aside"].value == 1
    [accounted] = [c for c in result.get_asset_check_evaluations() if c.check_name == "landing_bars_accounted"]
    assert accounted.passed

    window = sessions_between("2012-01-03", GRAPH_FIRST, GRAPH_LAST)
    for symbol, source in (("AAPL", ZIPLINE_AAPL), ("MSFT", SEED["MSFT"])):
        rows = lines_between(source, GRAPH_FIRST, GRAPH_LAST)
        got = prices(on_csvdir, symbol)
        assert [g[:6] for g in got] == values(rows) and len(got) == len(window) == 10
        assert {g[8] for g in got} == {"csvdir"}
    aapl = prices(on_csvdir, "AAPL")
    assert [(g[6], g[7]) for g in aapl] == [(float(r["dividend"]), float(r["split"])) for r in lines_between(ZIPLINE_AAPL, GRAPH_FIRST, GRAPH_LAST)]
    assert [g[0] for g in aapl if g[7] == 7.0] == [dt.date(2014, 6, 9)]
    assert [g[:6] for g in prices(on_csvdir, "IBM")] == values(lines_between(SEED["IBM"], GRAPH_FIRST, GRAPH_LAST))
    assert len(lake.list_files("raw")) == 3
