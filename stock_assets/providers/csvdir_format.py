"""Per-symbol CSV files (a folder or S3 prefix of `<SYMBOL>.csv`) -> canonical bars.

Pure: bytes in, Arrow out. Two layouts are read, told apart by the header:
- seed format `symbol,date,open,high,low,close,volume`, optionally followed by adj_close, vwap,
  trades, dividend, split_coefficient; every row's `symbol` must be the file's symbol;
- zipline's csvdir format `date,open,high,low,close,volume[,dividend,split]` with no symbol
  column: the symbol is the file's name. `split` is a ratio (7.0: 7-for-1 on that date) and
  `dividend` a cash amount on the ex-date, the same meaning as Alpha Vantage's `split coefficient`
  and `dividend amount`, so they become `split_coefficient` and `dividend`.
Header names are matched case-insensitively, with spaces read as underscores; other columns are
ignored (they stay in raw/). Dates are `YYYY-MM-DD`; an empty value is a null that the quality
checks judge, except an empty date, which makes the file unreadable (no window can be cut without it).
Daily bars are stamped at the session's 00:00 America/New_York, like every daily bar.
"""

import csv
import datetime as dt
import io
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets.calendar import NY
from stock_assets.providers.errors import MalformedPayloadError
from stock_assets.schema import conform, constant

PROVIDER = "csvdir"
REQUIRED = ("date", "open", "high", "low", "close", "volume")
_RENAME = {"split": "split_coefficient"}  # zipline csvdir
_FLOATS = ("open", "high", "low", "close", "adj_close", "vwap", "dividend", "split_coefficient")
_WHOLE = ("volume", "trades")  # read as numbers ("75555200.0" happens), rounded to whole ones
_READ = ("symbol", "date", *_FLOATS, *_WHOLE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|\s*[-+]?inf(inity)?\s*", re.IGNORECASE)
# Arrow's default null spellings: a value that reads as null is left to the quality checks.
_NULLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}


def header_names(body: bytes, name: str, symbol: str) -> list[str]:
    """The file's column names, canonical (lower case, `split` as `split_coefficient`); raises
    MalformedPayloadError when the header is missing, lacks a required column or repeats one."""
    first = body.split(b"\n", 1)[0].split(b"\r", 1)[0]  # \n, \r\n or \r line ends
    try:
        raw = next(csv.reader([first.decode("utf-8-sig")]), [])
    except UnicodeDecodeError:
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: line 1 (the header) is not UTF-8 text") from None
    names = [re.sub(r"\s+", "_", c.strip().lower()) for c in raw]
    names = [_RENAME.get(c, c) for c in names]
    if missing := [c for c in REQUIRED if c not in names]:
        shown = repr(",".join(raw)[:80]) if raw else "an empty line (an empty file?)"
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: line 1 is not a header with {','.join(REQUIRED)}: lacks {missing} in {shown}")
    if twice := sorted({c for c in names if c in _READ and names.count(c) > 1}):
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: line 1 names column(s) {twice} more than once")
    return names


def parse_csvdir(body: bytes, symbol: str, interval: str, ingested_at: dt.datetime, name: str = "") -> pa.Table:
    """Canonical bars of one file (or of the window's rows of one, as stored in raw/), in file order.

    Raises MalformedPayloadError naming `name`, the line and the column of the first bad value."""
    name = name or f"{symbol}.csv"
    if interval != "1d":
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: csvdir files hold daily bars, not {interval!r}")
    names = header_names(body, name, symbol)
    read = [c for c in names if c in _READ]
    types = {c: pa.string() if c == "symbol" else pa.date32() if c == "date" else pa.float64() for c in read}
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            # Our names for the header's columns (`skip_rows` drops the header); one thread, so that
            # the first error is the first bad row.
            read_options=pacsv.ReadOptions(column_names=[c if c in read else f"_ignored_{i}" for i, c in enumerate(names)], skip_rows=1, use_threads=False),
            convert_options=pacsv.ConvertOptions(include_columns=read, column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: {first_bad_line(body, names, symbol) or err}") from None
    wrong = pc.is_null(table["date"])
    if "symbol" in read:
        wrong = pc.or_(wrong, pc.fill_null(pc.not_equal(table["symbol"], symbol), True))
    if pc.any(wrong).as_py():
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: {first_bad_line(body, names, symbol) or 'a row without a date or for another symbol'}")
    n = table.num_rows
    day = table["date"]
    columns = {
        "symbol": constant(symbol, pa.string(), n),
        "session": day,
        "ts": pc.assume_timezone(pc.cast(day, pa.timestamp("us")), timezone=NY),
        "interval": constant(interval, pa.string(), n),
        "source": constant(PROVIDER, pa.string(), n),
        "ingested_at": constant(ingested_at, pa.timestamp("us", tz="UTC"), n),
    }
    columns |= {c: table[c] for c in _FLOATS if c in read}
    try:
        columns |= {c: pc.round(table[c]).cast(pa.int64()) for c in _WHOLE if c in read}
    except (pa.ArrowInvalid, OverflowError) as err:  # inf or beyond int64
        raise MalformedPayloadError(PROVIDER, symbol, f"{name}: a volume or trades value is not a whole number that fits: {err}") from None
    return conform(pa.table(columns))


def first_bad_line(body: bytes, names: list[str], symbol: str) -> str | None:
    """Where a file that did not parse goes wrong: `line N, column C: 'value' is not a number`, or
    None when no line explains it. Lines are counted in the file, from 1 (the header)."""
    for number, line in enumerate(body.splitlines()[1:], start=2):
        if not line:
            continue  # an empty line is no row, for Arrow too
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            return f"line {number}: not UTF-8 text (byte {err.start + 1})"
        fields = next(csv.reader([text]), [])
        if len(fields) != len(names):
            return f"line {number}: {len(fields)} fields where the header has {len(names)}"
        for column, value in zip(names, fields):
            if column == "date" and not (_DATE.fullmatch(value) and _is_date(value)):
                return f"line {number}, column date: {value!r} is not a date YYYY-MM-DD"
            if column == "symbol" and value != symbol:
                return f"line {number}, column symbol: {value!r} in the file of {symbol}"
            if (column in _FLOATS or column in _WHOLE) and value not in _NULLS and not _NUMBER.fullmatch(value):
                return f"line {number}, column {column}: {value!r} is not a number"
    return None


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def window_rows(body: bytes, days: pa.ChunkedArray, first: dt.date, last: dt.date) -> tuple[bytes, int] | None:
    """(the header and the lines dated first..last, byte for byte, in file order; how many lines),
    or None when the lines cannot be matched to the parsed rows one to one (a quoted value
    holding a line break)."""
    lines = body.splitlines(keepends=True)
    rows = [line for line in lines[1:] if line.rstrip(b"\r\n")]
    if len(rows) != len(days):
        return None
    inside = pc.and_(pc.greater_equal(days, pa.scalar(first, pa.date32())), pc.less_equal(days, pa.scalar(last, pa.date32())))
    kept = [row for row, wanted in zip(rows, inside.to_pylist()) if wanted]
    return lines[0] + b"".join(kept), len(kept)
