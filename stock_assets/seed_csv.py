"""The landing CSV: seed format `symbol,date,open,high,low,close,volume`, then our extras.

Files other systems drop may carry the seed columns only; the reader fills the rest
(daily bars stamped at the session's 00:00 America/New_York).
"""

import datetime as dt
import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets.calendar import NY
from stock_assets.schema import BAR_SCHEMA, conform, constant

SEED_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
EXTRA_COLUMNS = ["interval", "ts", "adj_close", "vwap", "trades", "source", "ingested_at", "dividend", "split_coefficient"]
THREADED_BYTES = 8 << 20  # smaller files parse faster on one thread; their callers parse many at once on a pool of their own
_TYPES = {f.name: f.type for f in BAR_SCHEMA} | {"date": pa.date32(), "split": pa.float64()}


class LandingFormatError(ValueError):
    pass


def utc_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """UTC timestamps as `2024-01-02 05:00:00.000000Z`, the CSV writer's own text for them, made
    without the per-value time-zone lookup that takes most of its time."""
    naive = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.timestamp("us"))
    return pc.binary_join_element_wise(pc.cast(naive, pa.string()), "Z", "")


def landing_csv_table(bars: pa.Table) -> pa.Table:
    """`bars` as the landing CSV's columns, timestamps as their text: what the CSV writer writes."""
    table = bars.rename_columns(["date" if c == "session" else c for c in bars.column_names])
    for name in ("ts", "ingested_at"):
        table = table.set_column(table.column_names.index(name), name, utc_text(table[name]))
    return table.select(SEED_COLUMNS + EXTRA_COLUMNS)


def landing_csv_buffer(bars: pa.Table) -> pa.Buffer:
    """The landing CSV of `bars` in an Arrow buffer (no copy into Python bytes)."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(landing_csv_table(bars), sink, pacsv.WriteOptions(quoting_header="none"))
    return sink.getvalue()


def to_landing_csv(bars: pa.Table) -> bytes:
    return landing_csv_buffer(bars).to_pybytes()


def _reading(body: bytes) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(use_threads=len(body) > THREADED_BYTES)


def landing_dates(body: bytes, name: str = "") -> pa.Array:
    """The `date` column alone: what counting a file's rows per session needs, parsed as CSV
    (quotes and all) at a fraction of a full parse's cost."""
    options = pacsv.ConvertOptions(include_columns=["date"], column_types={"date": pa.date32()})
    try:
        return pacsv.read_csv(io.BytesIO(body), _reading(body), convert_options=options)["date"].combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
        raise LandingFormatError(f"{name or 'CSV'}: cannot read its dates: {err}") from err


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"


def header_of(body: bytes) -> list[str]:
    """The column names on a CSV's first line (raises UnicodeDecodeError)."""
    return [c.strip().strip('"') for c in body.split(b"\n", 1)[0].decode().split(",")]


def column_types(header: list[str]) -> dict[str, pa.DataType]:
    return {c: _TYPES[c] for c in header if c in _TYPES}


def unreadable_rows(text: pa.Table) -> tuple[pa.Array | None, dict[str, int], str]:
    """Which rows of a CSV read as text have a seed-format number or date that is not one:
    (mask, {column: rows}, ""), or (None, {}, why) when its columns are not the seed format's."""
    if missing := [c for c in SEED_COLUMNS if c not in text.column_names]:
        return None, {}, f"missing seed-format columns {missing}"
    checks = {c: _DATE if c == "date" else _NUMBER for c in SEED_COLUMNS if c != "symbol"}
    checks |= {c: _NUMBER for c in ("adj_close", "vwap", "trades", "dividend", "split_coefficient", "split") if c in text.column_names}
    bad, counts = constant(False, pa.bool_(), text.num_rows), {}
    for column, pattern in checks.items():
        wrong = pc.invert(pc.fill_null(pc.match_substring_regex(text[column], pattern), True))  # nulls are the checks' to judge
        if pc.any(wrong).as_py():
            counts[column] = pc.sum(wrong).as_py()
            bad = pc.or_(bad, wrong)
    return bad, counts, ""


def unreadable_reason(counts: dict[str, int]) -> str:
    return "; ".join(f"{n} rows with a {c} that is not a {'date' if c == 'date' else 'number'}" for c, n in counts.items())


def text_options(header: list[str]) -> pacsv.ConvertOptions:
    """Every column read as text (nulls as nulls): how rows that did not parse are judged."""
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=True)


def split_unreadable_rows(body: bytes) -> tuple[bytes | None, bytes | None, str]:
    """A CSV whose typed parse failed, split into (good rows, bad rows, why), both as CSV with the
    header: a bad row has a seed-format number or date that is not one. (None, None, why) when
    the file has no usable header or no bad row explains the failure."""
    try:
        text = pacsv.read_csv(io.BytesIO(body), convert_options=text_options(header_of(body)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as err:
        return None, None, str(err)
    bad, counts, why = unreadable_rows(text)
    if bad is None:
        return None, None, why
    if not counts or pc.all(bad).as_py():
        return None, None, "no row is readable"
    return csv_bytes(text.filter(pc.invert(bad))), csv_bytes(text.filter(bad)), unreadable_reason(counts)


def csv_bytes(rows: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(rows, buf, pacsv.WriteOptions(quoting_header="none"))
    return buf.getvalue()


def from_landing_csv(body: bytes, *, source: str, ingested_at: dt.datetime, interval: str = "1d", name: str = "") -> pa.Table:
    """Parse a landing or seed-format CSV into canonical bars; `name` goes into errors."""
    try:
        types = column_types(header_of(body))
        table = pacsv.read_csv(io.BytesIO(body), _reading(body), convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as err:
        raise LandingFormatError(f"{name or 'CSV'}: cannot parse: {err}") from err
    return bars_from_table(table, source=source, ingested_at=ingested_at, interval=interval, name=name)


def bars_from_table(table: pa.Table, *, source: str, ingested_at: dt.datetime, interval: str = "1d", name: str = "") -> pa.Table:
    """A parsed landing or seed-format CSV (or a block of one) as canonical bars."""
    if "split" in table.column_names and "split_coefficient" not in table.column_names:  # zipline csvdir
        table = table.rename_columns(["split_coefficient" if c == "split" else c for c in table.column_names])
    missing = [c for c in SEED_COLUMNS if c not in table.column_names]
    if missing:
        raise LandingFormatError(f"{name or 'CSV'}: missing seed-format columns {missing}")
    n = table.num_rows
    table = table.append_column("session", table["date"])
    if "ts" not in table.column_names:
        table = table.append_column("ts", pc.assume_timezone(pc.cast(table["date"], pa.timestamp("us")), timezone=NY))
    defaults = {"interval": interval, "source": source, "ingested_at": ingested_at}
    for column, value in defaults.items():
        if column not in table.column_names:
            table = table.append_column(column, constant(value, _TYPES[column], n))
    return conform(table)
