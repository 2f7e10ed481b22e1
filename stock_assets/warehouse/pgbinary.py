"""An Arrow table as PostgreSQL's binary COPY format, built column by column with NumPy.

    header: PGCOPY\\n\\377\\r\\n\\0, flags int32 0, extension length int32 0
    row:    int16 field count, then per field int32 byte length (-1 = NULL) and the bytes
    trailer: int16 -1

All integers are big-endian. Dates count days and timestamps microseconds from 2000-01-01.
Binary means no text formatting here and no parsing on the server: values arrive bit for bit.
"""

import numpy as np
import pyarrow as pa

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"
PG_EPOCH_DAYS = 10957  # 2000-01-01 - 1970-01-01


def _fixed(column: pa.ChunkedArray) -> np.ndarray:
    """Big-endian bytes per value, one row each (width fixed by type); nulls become zeros."""
    t = column.type
    if pa.types.is_timestamp(t):
        micros = column.cast(pa.timestamp("us", tz=t.tz), safe=False).cast(pa.int64())
        values = micros.fill_null(0).to_numpy() - PG_EPOCH_DAYS * 86_400_000_000
    elif pa.types.is_date32(t):
        values = column.cast(pa.int32()).fill_null(0).to_numpy() - PG_EPOCH_DAYS
    elif pa.types.is_boolean(t):
        values = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    elif t in (pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64()):
        values = column.fill_null(0).to_numpy()
    else:
        raise TypeError(f"no binary COPY encoding for Arrow type {t}")
    values = values.astype(values.dtype.newbyteorder(">"))
    return values.view(np.uint8).reshape(len(values), values.dtype.itemsize)


def _strings(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, UTF-8 bytes): value i is bytes[offsets[i]:offsets[i + 1]], Arrow's own layout."""
    array = column.combine_chunks()
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], width)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    data = np.frombuffer(array.buffers()[2], np.uint8) if array.buffers()[2] else np.zeros(0, np.uint8)
    return offsets, data


def copy_binary(table: pa.Table) -> bytes:
    n = table.num_rows
    if not n:
        return HEADER + TRAILER
    valid = [c.is_valid().to_numpy(zero_copy_only=False) for c in table.columns]
    strings = {i: _strings(c) for i, c in enumerate(table.columns) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)}
    fixed = {i: _fixed(c) for i, c in enumerate(table.columns) if i not in strings}
    payload = [np.where(valid[i], np.diff(strings[i][0]) if i in strings else fixed[i].shape[1], 0) for i in range(len(valid))]
    sizes = 2 + sum(4 + p for p in payload) if payload else np.full(n, 2)
    row_starts = len(HEADER) + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.empty(len(HEADER) + int(np.sum(sizes)) + len(TRAILER), np.uint8)
    out[: len(HEADER)], out[-2:] = np.frombuffer(HEADER, np.uint8), np.frombuffer(TRAILER, np.uint8)
    _scatter(out, row_starts, np.full(n, len(valid), ">i2").view(np.uint8).reshape(n, 2))
    at = row_starts + 2
    for i, present in enumerate(payload):
        length = np.where(valid[i], present, -1).astype(">i4").view(np.uint8).reshape(n, 4)
        if i in fixed:  # length and value in one scatter; NULLs get the length only
            segment = np.hstack([length, fixed[i]])
            _scatter(out, at[valid[i]], segment[valid[i]])
            _scatter(out, at[~valid[i]], length[~valid[i]])
        else:  # each payload byte goes to its row's field start + its index within the value
            _scatter(out, at, length)
            offsets, data = strings[i]
            owner = np.repeat(np.arange(n), present)
            within = np.arange(int(present.sum())) - np.repeat(np.cumsum(present) - present, present)
            out[at[owner] + 4 + within] = data[offsets[:-1][owner] + within]
        at = at + 4 + present
    return out.tobytes()


def _scatter(out: np.ndarray, starts: np.ndarray, rows: np.ndarray) -> None:
    out[starts[:, None] + np.arange(rows.shape[1])] = rows
