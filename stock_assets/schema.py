"""The canonical bar: the Arrow schema every stage after raw_prices speaks (README.md)."""

import re

import pyarrow as pa

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,14}$")

# Every field is nullable in storage so that a bad bar can travel as far as the quality
# checks, which decide (REQUIRED_COLUMNS) and report it; it never reaches the warehouse.
BAR_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("session", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("interval", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("adj_close", pa.float64()),
        ("volume", pa.int64()),
        ("vwap", pa.float64()),
        ("trades", pa.int64()),
        ("source", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
        # Beyond the basic bar: what adjusted feeds send, so that a split can be told from a crash.
        ("dividend", pa.float64()),
        ("split_coefficient", pa.float64()),
    ]
)

REQUIRED_COLUMNS = ("symbol", "session", "ts", "interval", "open", "high", "low", "close", "volume", "source", "ingested_at")
KEY_COLUMNS = ("symbol", "interval", "ts")


class InvalidSymbolError(ValueError):
    pass


def validate_symbol(symbol: str) -> str:
    if not SYMBOL_PATTERN.match(symbol):
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: expected upper-case letters, digits, '.' or '-', 1-15 characters"
        )
    return symbol


def constant(value, type_: pa.DataType, n: int) -> pa.Array:
    """`n` copies of `value`, made in Arrow (not a Python list of n objects)."""
    return pa.repeat(pa.scalar(value, type_), n)


def conform(table: pa.Table, schema: pa.Schema = BAR_SCHEMA) -> pa.Table:
    """Select and cast `table` to `schema` in its column order; absent columns become nulls."""
    names = set(table.column_names)
    columns = [_as(table[f.name], f.type) if f.name in names else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _as(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == type_ else column.cast(type_)


def empty_bars() -> pa.Table:
    return BAR_SCHEMA.empty_table()
