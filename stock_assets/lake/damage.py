"""A lake table that cannot be read, told in one error: which table, which file, and the
command that rebuilds it (lake/repair.py).

delta-rs and pyarrow report a damaged log entry, checkpoint or data file as a Rust error with a
backtrace that mostly names no table or file. When a read of a table fails, its log and the
version's data files are looked at (only then: a healthy read pays nothing) to find the file.
An error no damaged file explains (a network error, a missing bucket) is raised as it came.
"""

import contextlib
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from stock_assets.lake.storage import LakeStorage

LOG = "_delta_log"


def rebuild_command(prefix: str) -> str:
    return f"python -m stock_assets.cli rebuild --table {prefix}"


class DamagedTableError(RuntimeError):
    """A Delta table of the lake whose log, checkpoint or data file is damaged or missing."""

    def __init__(self, uri: str, prefix: str, file: str, reason: str):
        self.uri, self.prefix, self.file, self.reason = uri, prefix, file, reason
        super().__init__(
            f"lake table {uri} is damaged: {file}: {reason}. Rebuild it with `{rebuild_command(prefix)}` "
            f"(or lake_repair_job in the UI; docs/operations.md)"
        )


def _version(name: str) -> int | None:
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _unreadable_parquet(storage: LakeStorage, path: str, whole: bool) -> str | None:
    try:
        pq.read_table(path, filesystem=storage.fs) if whole else pq.read_metadata(path, filesystem=storage.fs)
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as err:
        text = str(err).splitlines()[0].split("': ", 1)[-1].split(". ")[0]  # after the path, which is named already
        return f"not a readable Parquet file ({text[:100]})"
    return None


def _bad_commit(storage: LakeStorage, path: str) -> str | None:
    try:
        for line in storage.read_bytes(path).splitlines():
            json.loads(line) if line.strip() else None
    except FileNotFoundError:
        return "missing"
    except (ValueError, UnicodeDecodeError) as err:
        return f"not a valid log entry ({err})"
    return None


def damaged_log_file(storage: LakeStorage, prefix: str) -> tuple[str, str] | None:
    """(file, what is wrong) for the first damaged file of the table's log that a reader reads:
    the newest checkpoint when it is not Parquet, a later commit that is not JSON lines or is
    missing between two others."""
    names = [i.path.rsplit("/", 1)[1] for i in storage.file_infos(f"{prefix}/{LOG}")]
    checkpoints = sorted((n for n in names if ".checkpoint" in n and n.endswith(".parquet")), key=_version)
    since = -1
    if checkpoints:
        if why := _unreadable_parquet(storage, storage.path(f"{prefix}/{LOG}/{checkpoints[-1]}"), whole=True):
            return f"{LOG}/{checkpoints[-1]}", why
        since = _version(checkpoints[-1])
    elif "_last_checkpoint" in names:
        return f"{LOG}/_last_checkpoint", "names a checkpoint that is not in the log"
    newer = sorted(v for v in map(_version, (n for n in names if n.endswith(".json"))) if v is not None and v > since)
    expected = [f"{LOG}/{v:020d}.json" for v in range(since + 1, newer[-1] + 1)] if newer else []
    for name, why in zip(expected, storage.map(lambda n: _bad_commit(storage, f"{prefix}/{n}"), expected)):
        if why:
            return name, why
    return None


def damaged_data_file(storage: LakeStorage, prefix: str, options: dict, version, message: str) -> tuple[str, str] | None:
    """(file, what is wrong) for a data file of the version that is missing or not Parquet:
    the one the error names, else the first found."""
    table = DeltaTable(storage.uri(prefix), storage_options=options)
    latest = table.version()
    if version is not None:
        table.load_as_version(version)
    # An older version's files may be gone by design: vacuum deletes what only such versions need.
    vacuumed = table.version() < latest
    paths = pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()
    named = [p for p in paths if p in message]

    def check(path: str) -> str | None:
        full = storage.path(f"{prefix}/{path}")
        if storage.fs.get_file_info(full).type == pafs.FileType.NotFound:
            return None if vacuumed else "missing (the table's log lists it)"
        return _unreadable_parquet(storage, full, whole=path in named)

    for path in named:
        if why := check(path):
            return path, why
    return next(((path, why) for path, why in zip(paths, storage.map(check, paths)) if why), None)


def find_damage(storage: LakeStorage, prefix: str, options: dict, version, message: str) -> tuple[str, str] | None:
    found = damaged_log_file(storage, prefix)
    if found is None:
        with contextlib.suppress(DeltaError, OSError):
            found = damaged_data_file(storage, prefix, options, version, message)
    return found


@contextlib.contextmanager
def readable(storage: LakeStorage, prefix: str, options: dict, version=None) -> Iterator[None]:
    """Raise a failed read or write of the table at `prefix` as DamagedTableError when a damaged
    file explains it (the original chained), else as it came."""
    try:
        yield
    except (DamagedTableError, CommitFailedError):
        raise
    except (DeltaError, OSError, pa.ArrowException) as err:
        try:
            found = find_damage(storage, prefix, options, version, str(err))
        except (DeltaError, OSError, pa.ArrowException):
            found = None  # the store itself is failing (network, permissions): its error says more
        if found is None:
            raise
        raise DamagedTableError(storage.uri(prefix), prefix, *found) from err
