"""Where each layer lives in the lake, and how a window of sessions is written and read.

    raw/<first>_<last>/<provider>__<interval>__<symbol>__<ingested>.<ext>   payloads as received
    landing/<session>/<ingested>.csv                                        landing CSV by date
    landing/<session>/ext-<digest>.csv                                      rows of a file dropped in landing/incoming/
    landing/<session>/_<file>.json                                          what was written: rows, bytes, SHA-256
    quarantine/<name> + <name>.reason.txt                                   rows set aside, and why
    lake/<table>/ (_delta_log/, year=<YYYY>/<part>.parquet)                 Delta tables (lake/delta.py)

Writing a window replaces what the window held before (idempotent re-runs): landing and raw
files are each written atomically by LakeStorage, a Delta table's window in one commit.
"""

import collections
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets import tables
from stock_assets.lake import delta, landing_index, landing_scope
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.base import RawPayload
from stock_assets.schema import BAR_SCHEMA, conform
from stock_assets.seed_csv import (
    LandingFormatError,
    from_landing_csv,
    landing_csv_buffer,
    landing_dates,
    to_landing_csv,
)

log = logging.getLogger("stock_assets.lake")
STAMP = "%Y%m%dT%H%M%S%fZ"
QUARANTINE = "quarantine"
PIECE_ROWS = 65536  # rows of landing CSV encoded at a time (about 10 MiB)
LANDING_ORDER = ("session", "symbol", "interval", "ts", "ingested_at")  # a file per session: sessions first


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(STAMP)


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, STAMP).replace(tzinfo=dt.UTC)


# --- raw ---------------------------------------------------------------------------------

def raw_name(p: RawPayload) -> str:
    return f"{p.provider}__{p.interval}__{p.symbol}__{stamp(p.ingested_at)}__{p.part}.{p.extension}"


def write_raw(storage: LakeStorage, payloads: list[RawPayload], first: dt.date, last: dt.date, symbols=None) -> list[str]:
    """Keep the window's payloads; those the window fetched before are deleted (of `symbols`
    only, when given: another symbol's payloads stay)."""
    folder = f"raw/{first}_{last}"
    written = [f"{folder}/{raw_name(p)}" for p in payloads]
    for path, p in zip(written, payloads):
        storage.write_bytes(path, p.body)
    fetched = {(p.provider, p.interval) for p in payloads}
    for old in set(storage.list_files(folder)) - set(written):
        provider, interval, symbol, *_ = old.rsplit("/", 1)[1].split("__")
        if (provider, interval) in fetched and (symbols is None or symbol in symbols):
            storage.delete(old)
    return written


def _payload_from_path(storage: LakeStorage, path: str, first: dt.date, last: dt.date) -> RawPayload:
    name = path.rsplit("/", 1)[1]
    provider, interval, symbol, moment, rest = name.split("__")
    part, extension = rest.split(".", 1)
    return RawPayload(provider, symbol, interval, first, last, parse_stamp(moment), extension, storage.read_bytes(path), int(part))


def read_raw(storage: LakeStorage, first: dt.date, last: dt.date, exact: bool = False, symbols=None) -> list[RawPayload]:
    """The payloads fetched for exactly this window, or else (unless `exact`) every window
    overlapping it: a sub-range re-parses what a larger backfill fetched. Only `symbols`' when given."""
    windows = [f"{first}_{last}"] if exact or storage.list_files(f"raw/{first}_{last}") else [
        w for w in storage.list_dirs("raw") if w.split("_")[0] <= str(last) and w.split("_")[1] >= str(first)
    ]
    payloads = []
    for window in windows:
        a, b = (dt.date.fromisoformat(x) for x in window.split("_"))
        paths = [p for p in storage.list_files(f"raw/{window}") if symbols is None or p.rsplit("/", 1)[1].split("__")[2] in symbols]
        payloads += [_payload_from_path(storage, p, a, b) for p in paths]
    return payloads


# --- landing -----------------------------------------------------------------------------

def _session_runs(bars: pa.Table) -> tuple[pa.Table, np.ndarray | None, list[tuple[dt.date, int, int]], bool]:
    """How to read `bars` session by session, each session's rows sorted one way (equal data
    gives equal bytes): (table, order, runs, in_lake_order). The rows session by session are
    `table.take(order)` (`table` itself when order is None), and `runs` says where each session's
    are in them, as (session, first row, end row). `in_lake_order`: `bars` came in delta.SORT_COLUMNS
    order (a provider's payloads, symbol by symbol); then `table` is `bars`, and sessions first is
    only a stable argsort away, taken a piece at a time by whoever needs the rows."""
    in_lake_order = tables.is_sorted(bars, [c for c in delta.SORT_COLUMNS if c in bars.column_names])
    days = bars["session"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    order = None
    if in_lake_order:  # no null session either (is_sorted says so)
        order = np.argsort(days, kind="stable")
        days = days[order]
    else:
        bars = bars.sort_by([(c, "ascending") for c in LANDING_ORDER if c in bars.column_names])
        days = bars["session"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]]) if len(days) else np.array([], int)
    ends = np.r_[starts[1:], len(days)]
    epoch = dt.date(1970, 1, 1)
    return bars, order, [(epoch + dt.timedelta(days=int(days[s])), int(s), int(e)) for s, e in zip(starts, ends)], in_lake_order


def _rows(table: pa.Table, order: np.ndarray | None, first: int, end: int) -> pa.Table:
    return table.slice(first, end - first) if order is None else table.take(order[first:end])


def split_by_session(bars: pa.Table) -> dict[dt.date, pa.Table]:
    """Rows per session, each sorted the same way so that equal data gives equal bytes."""
    table, order, runs, _ = _session_runs(bars)
    bars = _rows(table, order, 0, table.num_rows)
    return {session: bars.slice(s, e - s) for session, s, e in runs}


@dataclass
class _Landed:
    """A session's landing CSV as chunks (header, rows), its rows and the latest ingestion in them."""

    chunks: list
    rows: int
    latest: dt.datetime
    symbols: dict[str, int]  # rows per symbol


def _encode(table: pa.Table, order: np.ndarray | None, runs: list[tuple[dt.date, int, int]]) -> dict[dt.date, _Landed]:
    """The runs' sessions landed: their rows encoded in one call and cut at the sessions' line
    ends, the same bytes as encoding each session on its own."""
    first, last = runs[0][1], runs[-1][2]
    rows = _rows(table, order, first, last)
    sessions = {session: rows.slice(s - first, e - s) for session, s, e in runs}
    latest = {session: pc.max(part["ingested_at"]).as_py() for session, part in sessions.items()}
    counts = {session: {c["values"]: c["counts"] for c in pc.value_counts(part["symbol"]).to_pylist()} for session, part in sessions.items()}
    body = landing_csv_buffer(rows)
    ends = np.flatnonzero(np.frombuffer(body, np.uint8) == ord("\n"))
    if len(ends) != last - first + 1:  # a value holding a line break: encode session by session
        return {session: _Landed([to_landing_csv(part)], part.num_rows, latest[session], counts[session]) for session, part in sessions.items()}
    view = memoryview(body)
    header = view[: ends[0] + 1]
    return {
        session: _Landed([header, view[ends[s - first] + 1 : ends[e - first] + 1]], e - s, latest[session], counts[session])
        for session, s, e in runs
    }


def _landing_bodies(table: pa.Table, order: np.ndarray | None, runs: list[tuple[dt.date, int, int]]) -> Iterator[dict[dt.date, _Landed]]:
    """The sessions landed, in order, a piece of about PIECE_ROWS rows at a time: pieces are
    taken and encoded ahead on a thread per core (Arrow releases the GIL) while the caller writes,
    at most one per core ahead, so memory holds a few pieces and never the window's whole CSV
    (nor a copy of the window in session order)."""
    pieces, rows = [[]], 0
    for run in runs:
        if rows >= PIECE_ROWS:
            pieces.append([])
            rows = 0
        pieces[-1].append(run)
        rows += run[2] - run[1]
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        ahead: collections.deque = collections.deque()
        for piece in (p for p in pieces if p):
            ahead.append(pool.submit(_encode, table, order, piece))
            if len(ahead) > workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _replace_folder(storage: LakeStorage, listing: list[str], keep: str | None, symbols=None) -> set[str]:
    """Delete what a folder held (`listing`, made before `keep` was written) but `keep` (and its
    record) and files dropped by others (ext-*, and their records); with `symbols`, of our files
    only those whose scope they cover whole (landing_scope.py). Returns the symbols of `symbols`
    that files kept still hold."""
    ours = [p for p in _csv_files(listing) if p != keep and not p.rsplit("/", 1)[1].startswith(landing_scope.EXTERNAL)]
    survivors, left = set(), set()
    for old in ours if symbols is not None else ():
        scope = landing_scope.scope_and_age(storage, old, landing_scope.record_of(storage, record_path(old)))[0]
        if not scope <= set(symbols):
            survivors |= {old, record_path(old)}
            left |= scope & set(symbols)
    spared = survivors | ({keep, record_path(keep)} if keep else set())
    for old in listing:
        if old not in spared and not old.rsplit("/", 1)[1].lstrip("_").startswith(landing_scope.EXTERNAL):
            storage.delete(old)
    return left


def record_path(path: str) -> str:
    folder, name = path.rsplit("/", 1)
    return f"{folder}/_{name}.json"


def write_landing_file(storage: LakeStorage, path: str, session: dt.date, rows: int, chunks: list, symbols: dict[str, int] | None = None) -> dict:
    """One landing CSV of one session (`rows` rows, as `chunks` of bytes), then the record of what
    it holds (rows, bytes, SHA-256, and the window's symbols' rows when scoped: landing_scope.py):
    the landing reconcile compares the file with it, so a file truncated, emptied or edited later
    is found. Hidden name (`_`): readers of the folder skip it."""
    storage.write_chunks(path, chunks)
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    size = sum(len(c) for c in chunks)
    record = {"rows": rows, "bytes": size, "sha256": digest.hexdigest(), "written_at": dt.datetime.now(dt.UTC).isoformat(),
              "sessions": {str(session): rows}} | ({"symbols": symbols} if symbols is not None else {})  # fmt: skip
    storage.write_bytes(record_path(path), json.dumps(record).encode())
    return record


def quarantine(storage: LakeStorage, name: str, body: bytes, reason: str) -> list[str]:
    """Set data aside under quarantine/ with the reason beside it; returns both paths."""
    data, note = f"{QUARANTINE}/{name}", f"{QUARANTINE}/{name}.reason.txt"
    storage.write_bytes(data, body)
    storage.write_bytes(note, reason.encode())
    return [data, note]


def write_landing(storage: LakeStorage, bars: pa.Table, sessions: list[dt.date], symbols=None) -> list[str]:
    return write_landing_and_keep(storage, bars, sessions, symbols)[0]


def write_landing_and_keep(storage: LakeStorage, bars: pa.Table, sessions: list[dt.date], symbols=None) -> tuple[list[str], pa.Table]:
    """write_landing, and the window's rows as read_landing will return them while the window's
    folders hold only these files: in the lake's order (symbol first) when `bars` came in it (a
    provider's payloads, symbol by symbol), so that the lake need not sort them back; else as
    read_landing orders them (session by session). With `symbols` (a window scoped to them) the
    files hold their rows only, and other symbols' files stay (landing_scope.py)."""
    given, (table, order, runs, in_lake_order) = bars, _session_runs(bars)
    storage.clean_temporary()
    strays = sorted({session for session, *_ in runs} - set(sessions))
    if strays:  # the caller sets such bars aside first (landing_csv): none may vanish here
        raise ValueError(f"bars outside the landing window's sessions: {', '.join(map(str, strays[:5]))}")
    others = sorted(set(pc.unique(bars["symbol"]).to_pylist()) - set(symbols)) if symbols is not None and bars.num_rows else []
    if others:
        raise ValueError(f"bars of symbols outside the landing window's ({','.join(sorted(symbols))}): {', '.join(map(str, others[:5]))}")
    suffix = landing_scope.scope_suffix(symbols)
    held: dict[str, list[str]] = collections.defaultdict(list)  # what each folder held before: one listing of the window
    for path in landing_index.window_paths(storage, sessions):
        held[path.split("/", 2)[1]].append(path)
    records: dict[str, dict] = {}  # what a reader in this process need not read back (landing_index.Written)
    scope_kept = None if symbols is None else frozenset(symbols)

    def write(item: tuple[dt.date, _Landed | None]) -> str | None:
        session, landed = item
        path = None
        if landed is not None:
            path = f"landing/{session}/{stamp(landed.latest)}{suffix}.csv"
            scope = None if symbols is None else dict.fromkeys(sorted(set(symbols)), 0) | landed.symbols
            record = write_landing_file(storage, path, session, landed.rows, landed.chunks, scope)
            records[path] = {"rows": record["rows"], "sessions": record["sessions"], "scope": scope_kept}
        # Files landed from other systems' drops (ext-*) are theirs, not this window's to replace.
        if _replace_folder(storage, held.get(str(session), []), keep=path, symbols=symbols) and path is None:
            # Older files still hold the window's symbols' rows: an empty file of its scope replaces them.
            path = f"landing/{session}/{stamp(dt.datetime.now(dt.UTC))}{suffix}.csv"
            write_landing_file(storage, path, session, 0, [to_landing_csv(BAR_SCHEMA.empty_table())], dict.fromkeys(sorted(set(symbols)), 0))
        return path

    written = {}
    for landed in _landing_bodies(table, order, runs):
        # A thread per core locally too: hashing, writing and renaming a file (~1 ms) release the GIL.
        written |= dict(zip(landed, storage.map(write, landed.items(), cpu=True)))
    empty = [s for s in sessions if s not in written]
    written |= {s: p for s, p in zip(empty, storage.map(write, [(s, None) for s in empty])) if p}
    paths = [written[s] for s in sessions if s in written]
    landing_index.WRITTEN.remember(storage, records, record_path, landing_index.window_infos(storage, sessions))
    if in_lake_order:
        return paths, conform(given.combine_chunks())  # one chunk, as a sort would leave it: later steps are faster on it
    # As read_landing returns it: file by file in the order of `sessions` (strays raised above).
    by_session = {session: table.slice(s, e - s) for session, s, e in runs}
    listed = [s for s in sessions if s in by_session]
    return paths, conform(table if listed == sorted(listed) else pa.concat_tables([by_session[s] for s in listed]))


def _landing_listing(storage: LakeStorage, sessions: list[dt.date]) -> list[str]:
    """Everything in the window's landing folders, in session order."""
    return landing_index.window_paths(storage, sessions)


def _csv_files(listing: list[str]) -> list[str]:
    return [path for path in listing if not path.rsplit("/", 1)[1].startswith("_") and path.endswith(".csv")]


def landing_files(storage: LakeStorage, sessions: list[dt.date]) -> list[str]:
    """Every landing CSV in the window's folders, ours and dropped ones, in session order."""
    return _csv_files(_landing_listing(storage, sessions))


def read_landing(storage: LakeStorage, sessions: list[dt.date], symbols=None) -> pa.Table:
    """The window's landing rows (`symbols`' only, when given; each symbol's from the files that
    supply it: landing_scope.py). A file that cannot be read moves to quarantine/ with its reason
    instead of failing every run that covers it; the landing record of one of ours stays, so
    `landing_files_intact` names it until a re-run of the window lands it again."""

    def read(path: str) -> pa.Table | None:
        name = path.rsplit("/", 1)[1].removesuffix(".csv")
        moment = parse_stamp(name.split("-", 1)[0]) if name[:8].isdigit() else dt.datetime.now(dt.UTC)
        body = storage.read_bytes(path)
        try:
            return from_landing_csv(body, source="landing", ingested_at=moment, name=storage.uri(path))
        except LandingFormatError as err:
            quarantine(storage, f"landing/{stamp(dt.datetime.now(dt.UTC))}-{path.replace('/', '_')}", body, f"{err}\n")
            storage.delete(path)
            if name.startswith("ext-"):  # another system's drop: nothing here can land it again
                with contextlib.suppress(FileNotFoundError):
                    storage.delete(record_path(path))
            log.warning("%s: %s; moved to quarantine/landing/", storage.uri(path), err)
            return None

    files = landing_files(storage, sessions)
    read_files = {p: t for p, t in zip(files, storage.map(read, files, cpu=True)) if t is not None}
    supply = _supply(storage, read_files, symbols, lambda p: set(pc.unique(read_files[p]["symbol"]).to_pylist()))
    tables = [t if supply[p] is None else tables_only_symbols(t, supply[p]) for p, t in read_files.items()]
    return pa.concat_tables(tables) if tables else BAR_SCHEMA.empty_table()


def tables_only_symbols(table: pa.Table, symbols) -> pa.Table:
    return tables.only(table, pc.is_in(table["symbol"], value_set=pa.array(sorted(symbols), pa.string())))


def _supply(storage: LakeStorage, files, symbols, held) -> dict[str, set[str] | None]:
    """The symbols each landing file supplies (None: all its rows): landing_scope.supplied, per
    session folder; a folder with one file of ours needs no record read."""
    folders: dict[str, list[str]] = {}
    for path in files:
        folders.setdefault(path.rsplit("/", 1)[0], []).append(path)
    out = {}
    for paths in folders.values():
        ours = [p for p in paths if not p.rsplit("/", 1)[1].startswith(landing_scope.EXTERNAL)]
        if len(ours) < 2:
            out |= dict.fromkeys(paths, None if symbols is None else set(symbols))
            continue
        records = storage.map(lambda p: landing_scope.record_of(storage, record_path(p)), ours)
        scopes = {p: landing_scope.scope_and_age(storage, p, r, None if r and "symbols" in r else held(p)) for p, r in zip(ours, records)}
        out |= landing_scope.supplied(scopes | {p: (set(), "") for p in paths if p not in scopes}, symbols)
    return out


def inspect_landing(storage: LakeStorage, sessions: list[dt.date], symbols=None) -> tuple[dict[dt.date, int], dict[str, str]]:
    """Rows in landing per session (as a file's record counted them when the file is the one recorded,
    else by each row's date, parsing nothing else; of the rows read_landing supplies, `symbols`'
    only when given), and the files that differ from their record ({uri: what differs}):
    truncated, emptied, edited, unreadable or never recorded. A file this process wrote, listed
    as it was right after (and its record too), is counted from the record it wrote without
    being read back (landing_index.Written)."""
    infos = {storage.relative(i.path): i for i in landing_index.window_infos(storage, sessions)}
    listing = list(infos)

    def inspect(path: str) -> tuple[dict[str, int] | None, str | None, dict | None]:
        if (known := landing_index.WRITTEN.record(storage, path, infos[path], infos.get(record_path(path)))) is not None:
            return known["sessions"], None, known
        body = storage.read_bytes(path)
        try:
            record = json.loads(storage.read_bytes(record_path(path)))
        except FileNotFoundError:
            record = None
        intact = record is not None and hashlib.sha256(body).hexdigest() == record["sha256"]
        if intact and "sessions" in record:
            return record["sessions"], None, record  # the very bytes the record counted: nothing to parse
        try:
            dates = landing_dates(body, storage.uri(path))
        except LandingFormatError as err:
            return None, f"unreadable: {err}", None
        counts = {str(c["values"]): c["counts"] for c in pc.value_counts(dates).to_pylist() if c["values"] is not None}
        if record is None:
            return counts, "no record of it being written (written by hand, or its writer died)", None
        if not intact:
            return counts, f"changed since written: {len(dates)} rows and {len(body)} bytes, recorded {record['rows']} rows and {record['bytes']} bytes", None
        return counts, None, record

    paths = _csv_files(listing)
    found = storage.map(inspect, paths)
    damaged = {storage.uri(p): why for p, (_, why, _) in zip(paths, found) if why}
    for path in (p for p in listing if p.rsplit("/", 1)[1].startswith("_") and p.endswith(".csv.json")):
        written = path.rsplit("/", 1)[0] + "/" + path.rsplit("/", 1)[1][1:].removesuffix(".json")
        if written not in paths:
            damaged[storage.uri(written)] = "recorded as written, but the file is gone (moved to quarantine/landing/ as unreadable?); re-run the window"
    readable = {p: (counts, record) for p, (counts, _, record) in zip(paths, found) if counts is not None}
    supply = _supply(storage, list(readable), symbols, lambda p: landing_scope.symbols_in(storage.read_bytes(p)))
    rows: collections.Counter = collections.Counter()
    supplied = lambda p: readable[p][0] if supply[p] is None else _supplied_rows(storage, p, supply[p], *readable[p])
    for counts in storage.map(supplied, list(readable)):
        rows.update(counts)
    return {dt.date.fromisoformat(d): n for d, n in rows.items()}, damaged


def _supplied_rows(storage: LakeStorage, path: str, supply: set[str], counts: dict[str, int], record: dict | None) -> dict[str, int]:
    """Rows per session of `supply`'s symbols in a landing file: from its record when intact
    (`record` is given only then) and scoped (one session), else counted in its date and symbol columns."""
    if record and record.get("scope") is not None and record["scope"] <= supply:  # written by this process: all its rows supplied
        return counts
    if record and isinstance(record.get("symbols"), dict) and len(counts) <= 1:
        return {session: sum(n for sym, n in record["symbols"].items() if sym in supply) for session in counts}
    read = pacsv.ConvertOptions(include_columns=["date", "symbol"], column_types={"date": pa.date32(), "symbol": pa.string()})
    rows = pacsv.read_csv(io.BytesIO(storage.read_bytes(path)), convert_options=read)
    dates = rows.filter(pc.is_in(rows["symbol"], value_set=pa.array(sorted(supply), pa.string())))["date"]
    return {str(c["values"]): c["counts"] for c in pc.value_counts(dates).to_pylist() if c["values"] is not None}


def landing_record_rows(storage: LakeStorage, sessions: list[dt.date], symbols=None) -> int:
    """Rows the records of the window's own landing files (not dropped ext-* ones; with `symbols`,
    those of its scope: named by landing_scope.scope_suffix) say were written."""
    suffix = landing_scope.scope_suffix(symbols)
    infos = {storage.relative(i.path): i for i in landing_index.window_infos(storage, sessions)}
    ours = [p for p in _csv_files(list(infos))
            if not p.rsplit("/", 1)[1].startswith("ext-") and (symbols is None or p.endswith(f"{suffix}.csv"))]  # fmt: skip

    def rows(path: str) -> int:
        known = landing_index.WRITTEN.record(storage, path, infos[path], infos.get(record_path(path)))
        return known["rows"] if known is not None else json.loads(storage.read_bytes(record_path(path)))["rows"]

    return sum(storage.map(rows, ours))


# --- typed layers: Delta tables (stock_assets.lake.delta) ---------------------------------

def write_sessions(storage: LakeStorage, prefix: str, table: pa.Table, sessions: list[dt.date], symbols=None, scope: str | None = None) -> list[str]:
    """Replace the window's sessions (`symbols`' rows, or `scope`'s, when given: delta.write_window)
    of the Delta table at `prefix` in one commit; [its URI@version]."""
    version, _ = delta.write_window(storage, prefix, table, sessions, symbols, scope)
    return [f"{storage.uri(prefix)}@v{version}"]


def write_and_keep(storage: LakeStorage, prefix: str, table: pa.Table, sessions: list[dt.date], symbols=None) -> tuple[list[str], pa.Table]:
    """write_sessions, and the window as read_sessions will return it."""
    version, rows = delta.write_window(storage, prefix, table, sessions, symbols)
    return [f"{storage.uri(prefix)}@v{version}"], conform(rows)


def read_sessions(storage: LakeStorage, prefix: str, sessions: list[dt.date], schema: pa.Schema | None = BAR_SCHEMA, symbols=None) -> pa.Table:
    """The window's rows (`symbols`' only, when given) of the Delta table at `prefix`; `schema=None` keeps the table's own."""
    return delta.read_window(storage, prefix, sessions, schema, symbols=symbols)
