"""Which landing file supplies which symbol of a session, once windows are scoped to symbols.

A window writes one landing file per session holding its symbols' rows; its record names the
window's symbols (`"symbols": {symbol: rows}`, a symbol with no bar included): the file's scope.
Other files in the folder are left alone but for those whose scope the new one covers whole.
A symbol's rows in a session come from the newest of our files whose scope holds it (a later
window of that symbol replaces its rows, whatever older file also holds them); files dropped by
other systems (ext-*) supply every row they hold. A file without a scope in its record (written
before scopes, or by hand) is scoped to the symbols it holds.
"""

import datetime as dt
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets.lake.storage import LakeStorage

EXTERNAL = "ext-"


def scope_suffix(symbols) -> str:
    """'-<digest>' naming a window's symbols in its landing files' names ('' for no scope)."""
    return "" if symbols is None else "-" + hashlib.sha256(",".join(sorted(set(symbols))).encode()).hexdigest()[:8]


def record_of(storage: LakeStorage, record: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(record))
    except (FileNotFoundError, ValueError):
        return None


def symbols_in(body: bytes) -> set[str]:
    """The symbols a landing CSV holds (its symbol column only); none when it cannot be read."""
    try:
        read = pacsv.ConvertOptions(include_columns=["symbol"], column_types={"symbol": pa.string()})
        return set(pacsv.read_csv(io.BytesIO(body), convert_options=read)["symbol"].to_pylist())
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
        return set()


def symbols_in_file(storage: LakeStorage, path: str) -> set[str]:
    """The symbols a landing CSV holds, its symbol column streamed a block at a time (a dropped file may be large)."""
    read = pacsv.ConvertOptions(include_columns=["symbol"], column_types={"symbol": pa.string()})
    found: set[str] = set()
    with storage.fs.open_input_stream(storage.path(path)) as stream:
        for batch in pacsv.open_csv(stream, convert_options=read):
            found |= set(pc.unique(batch.column(0)).to_pylist())
    return found - {None}


def scope_and_age(storage: LakeStorage, path: str, record: dict | None, held: set[str] | None = None) -> tuple[set[str], str]:
    """A file's scope and when it was written (ISO text, comparable), from its record, else from
    the symbols it holds (`held`, or read from it) and its name."""
    name = path.rsplit("/", 1)[1]
    if record and isinstance(record.get("symbols"), dict):
        return set(record["symbols"]), record.get("written_at", "")
    stamp = name.split("-", 1)[0].removesuffix(".csv")
    written = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC).isoformat() if stamp[:8].isdigit() else ""
    return (held if held is not None else symbols_in(storage.read_bytes(path))), (record or {}).get("written_at", written)


def supplied(scopes: dict[str, tuple[set[str], str]], symbols=None) -> dict[str, set[str] | None]:
    """For one session's files ({path: (scope, written)}): the symbols each supplies, newest of
    ours first (None: every row, for dropped ext-* files), within `symbols` when given."""
    wanted = None if symbols is None else set(symbols)
    out: dict[str, set[str] | None] = {}
    claimed: set[str] = set()
    ours = sorted((p for p in scopes if not p.rsplit("/", 1)[1].startswith(EXTERNAL)), key=lambda p: (scopes[p][1], p), reverse=True)
    for path in ours:
        scope = scopes[path][0]
        out[path] = (scope - claimed) if wanted is None else (scope - claimed) & wanted
        claimed |= scope
    for path in scopes:
        if path not in out:
            out[path] = None if wanted is None else wanted
    return out
