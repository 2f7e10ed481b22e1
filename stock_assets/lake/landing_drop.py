"""Files other systems drop into landing/incoming/ (seed CSV format): validated, split by
session into the landing layout, or quarantined with the reason written beside them.

Good rows are never lost to bad ones: a row with a value that is not a number or a date, an
invalid symbol or a date that is not an NYSE session goes to quarantine/, the rest land. A
file that cannot be parsed at all is copied to quarantine/ whole, with its reason; the
dropped original is never deleted.

A file of any size lands in bounded memory: it is parsed BLOCK_BYTES at a time and hashed as it
is read; each block's good and bad rows go to a local spool (spool.py). Only once the whole file
has been read do its sessions land, a group at a time, so a file found unreadable halfway lands
nothing.
"""

import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets.lake.layout import QUARANTINE, split_by_session, stamp, write_landing_file
from stock_assets.lake.spool import Spool
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import SYMBOL_PATTERN
from stock_assets.seed_csv import (
    LandingFormatError,
    bars_from_table,
    column_types,
    csv_bytes,
    from_landing_csv,
    header_of,
    landing_csv_table,
    text_options,
    to_landing_csv,
    unreadable_reason,
    unreadable_rows,
)

INCOMING = "landing/incoming"
BLOCK_BYTES = 1 << 19  # CSV parsed at a time; Arrow's reader reads up to 32 blocks ahead of the one parsed
READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError)


@dataclass
class DropOutcome:
    source: str
    digest: str  # of the file's bytes: the same content dropped twice is the same run
    sessions: list[dt.date] = field(default_factory=list)
    landed_rows: int = 0
    rejected_rows: int = 0
    quarantined: list[str] = field(default_factory=list)
    error: str | None = None


def chunks(storage: LakeStorage, path: str) -> Iterator[bytes]:
    with storage.fs.open_input_stream(storage.path(path)) as f:
        while chunk := f.read(BLOCK_BYTES):
            yield chunk


def file_digest(storage: LakeStorage, path: str) -> str:
    """The SHA-256 (first 16 hex digits) of a file of the lake, read a block at a time."""
    digest = hashlib.sha256()
    for chunk in chunks(storage, path):
        digest.update(chunk)
    return digest.hexdigest()[:16]


class _Hashing:
    """The dropped file as the CSV reader reads it, hashed on the way. Reads are Arrow buffers:
    Python bytes of a block's size, freed on the reader's threads, would stay in the heap."""

    closed = False

    def __init__(self, stream) -> None:
        self.stream, self.sha256 = stream, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> pa.Buffer:
        data = self.stream.read_buffer(size if size >= 0 else None)
        self.sha256.update(data)
        return data


def _read(storage: LakeStorage, path: str, spool: Spool, header: list[str], valid: pa.Array, now: dt.datetime, as_text: bool) -> str:
    """Parse, check and spool the file block by block; its digest. Typed first; `as_text` when
    that failed: every value read as text, so that a bad one sets aside its row only."""
    name, uri = path.rsplit("/", 1)[1], storage.uri(path)
    options = text_options(header) if as_text else pacsv.ConvertOptions(column_types=column_types(header))
    with storage.fs.open_input_stream(storage.path(path)) as stream:
        hashing = _Hashing(stream)
        for batch in pacsv.open_csv(hashing, pacsv.ReadOptions(block_size=BLOCK_BYTES), convert_options=options):
            _check(spool, _bars(pa.Table.from_batches([batch]), spool, as_text, now, name, uri), valid)
    spool.close()
    return hashing.sha256.hexdigest()[:16]


def _bars(block: pa.Table, spool: Spool, as_text: bool, now: dt.datetime, name: str, uri: str) -> pa.Table:
    """A block as bars; read as text, its rows with a value that is not one go to their spool first."""
    if as_text:
        bad, counts, _ = unreadable_rows(block)
        if counts:
            spool.unreadable.update(counts)
            spool.unreadable_rows += pc.sum(bad).as_py()
            spool.write("unreadable", block.filter(bad))
            block = block.filter(pc.invert(bad))
        return from_landing_csv(csv_bytes(block), source=f"landing:{name}", ingested_at=now, name=uri)
    return bars_from_table(block, source=f"landing:{name}", ingested_at=now, name=uri)


def _check(spool: Spool, bars: pa.Table, valid: pa.Array) -> None:
    """Spool a block's bars: those with an invalid symbol or on no valid session set aside."""
    if not bars.num_rows:
        return
    bad_symbol = pc.invert(pc.fill_null(pc.match_substring_regex(bars["symbol"], SYMBOL_PATTERN.pattern), False))
    not_session = pc.invert(pc.fill_null(pc.is_in(bars["session"], value_set=valid), False))
    rejected = pc.or_(bad_symbol, not_session)
    if pc.any(rejected).as_py():
        spool.rejected_rows += pc.sum(rejected).as_py()
        spool.bad_symbol += pc.sum(bad_symbol).as_py()
        spool.not_session += pc.sum(not_session).as_py()
        spool.write("rejected", landing_csv_table(bars.filter(rejected)))
        bars = bars.filter(pc.invert(rejected))
    if bars.num_rows:
        spool.add_good(bars)


def quarantine(storage: LakeStorage, name: str, chunks: Iterator[bytes], reason: str) -> list[str]:
    """layout.quarantine for data streamed a block at a time: set aside with the reason beside it."""
    data, note = f"{QUARANTINE}/{name}", f"{QUARANTINE}/{name}.reason.txt"
    storage.write_chunks(data, chunks)
    storage.write_bytes(note, reason.encode())
    return [data, note]


def _land(storage: LakeStorage, spool: Spool, digest: str) -> None:
    """The spooled good rows into landing/<session>/ext-<digest>.csv, a group of sessions at a time."""
    land = lambda item: write_landing_file(storage, f"landing/{item[0]}/ext-{digest}.csv", item[0], item[1].num_rows, [to_landing_csv(item[1])])
    for rows in spool.groups():
        storage.map(land, split_by_session(rows).items())


def _header(storage: LakeStorage, path: str) -> list[str]:
    with storage.fs.open_input_stream(storage.path(path)) as f:
        return header_of(f.read(1 << 16))


def land_dropped_file(storage: LakeStorage, path: str, sessions: set[dt.date], now: dt.datetime) -> DropOutcome:
    """Land one dropped file; `sessions` are the valid NYSE sessions."""
    name, uri = path.rsplit("/", 1)[1], storage.uri(path)
    valid = pa.array(sorted(sessions), pa.date32())
    with tempfile.TemporaryDirectory(prefix="stock-assets-drop-") as folder:
        spool, error = Spool(f"{folder}/typed"), None
        os.mkdir(spool.folder)
        try:
            digest = _read(storage, path, spool, _header(storage, path), valid, now, as_text=False)
        except LandingFormatError as err:  # not the seed format's columns: no row can be read
            error = str(err)
        except READ_ERRORS as err:  # a value that is not one, or no CSV at all: again, every value as text
            error = f"{uri}: cannot parse: {err}"
            spool.pending = []
            spool.close()
            spool = Spool(f"{folder}/text")
            os.mkdir(spool.folder)
            try:
                digest = _read(storage, path, spool, _header(storage, path), valid, now, as_text=True)
                error = None if spool.rows or spool.rejected_rows else error  # else no row is readable
            except (*READ_ERRORS, LandingFormatError):
                pass
        spool.close()
        if error:  # the file itself cannot be read: a copy and the reason go to quarantine;
            outcome = DropOutcome(source=path, digest=file_digest(storage, path), error=error)  # the original stays (replace it to retry)
            outcome.quarantined = quarantine(storage, f"{stamp(now)}-{name}", chunks(storage, path), f"{error}\n")
            return outcome
        outcome = DropOutcome(source=path, digest=digest, sessions=sorted(spool.rows), landed_rows=sum(spool.rows.values()),
                              rejected_rows=spool.unreadable_rows + spool.rejected_rows)  # fmt: skip
        if spool.unreadable_rows:
            outcome.quarantined += quarantine(storage, f"{stamp(now)}-{name}.unreadable.csv", spool.chunks("unreadable"),
                                              f"{uri}: {unreadable_reason(dict(spool.unreadable))}\n")  # fmt: skip
        if spool.rejected_rows:
            reasons = [f"{spool.bad_symbol} rows with an invalid symbol", f"{spool.not_session} rows on a date that is not an NYSE session from {min(sessions)} to today"]
            outcome.quarantined += quarantine(storage, f"{stamp(now)}-{name}.rejected.csv", spool.chunks("rejected"), f"{uri}: " + "; ".join(reasons) + "\n")
        if spool.rows:
            _land(storage, spool, digest)
    return outcome
