"""Arrow helpers for tables that are usually in order already: a window written sorted is read,
deduplicated and checked in that order, and a sort or a group-by over 1 M rows costs far more than
finding out that none is needed."""

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def is_sorted(table: pa.Table, columns: list[str] | tuple[str, ...]) -> bool:
    """True when the rows are in ascending order of `columns` (no nulls in them), as `sort_by` leaves them."""
    n = table.num_rows
    if n < 2:
        return True
    if any(table[c].null_count for c in columns):
        return False  # nulls sort last; not worth comparing by hand
    in_order = None  # row i <= row i + 1, from the last column to the first
    for column in reversed(columns):
        before, after = table[column].slice(0, n - 1), table[column].slice(1)
        if in_order is None:
            in_order = pc.less_equal(before, after)
        else:
            in_order = pc.or_(pc.less(before, after), pc.and_(pc.equal(before, after), in_order))
    return bool(pc.all(in_order).as_py())


def sort(table: pa.Table, columns: list[str] | tuple[str, ...]) -> pa.Table:
    """`table` in ascending order of `columns`, not copied when it already is."""
    return table if is_sorted(table, columns) else table.sort_by([(c, "ascending") for c in columns])


def starts(table: pa.Table, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """For a table sorted by `columns`: True for every row whose values of `columns` differ from the
    row before (the first row, and a null, count as different): where each group begins."""
    n = table.num_rows
    if n < 2:
        return np.ones(n, bool)
    same = None
    for column in columns:
        equal = pc.equal(table[column].slice(0, n - 1), table[column].slice(1))
        same = equal if same is None else pc.and_(same, equal)
    return np.r_[True, ~pc.fill_null(same, False).to_numpy(zero_copy_only=False)]


def repeated_rows(table: pa.Table, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """For a table sorted by `columns`: True for every row whose values of `columns` another row shares."""
    same = ~starts(table, columns)[1:]  # row i + 1 repeats row i
    mask = np.zeros(table.num_rows, bool)
    mask[:-1] |= same
    mask[1:] |= same
    return mask


def only(table: pa.Table, mask: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table.filter(mask)`, not copied when every row is kept."""
    return table if mask.null_count == 0 and pc.all(mask).as_py() else table.filter(mask)


def duckdb_over(**named: pa.Table) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (UTC) on which each Arrow table is a view by its name."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in named.items():
        con.register(name, table)
    return con
