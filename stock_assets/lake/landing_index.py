"""The window's landing folders listed in few requests, and what this process wrote there, so
that a run does not read back the landing files it has just written.

On S3 each request is a round trip, and the object count is what a long window pays for: a
10-year window is 2,520 session folders holding 5,040 objects (a CSV and its record each). One
listing per folder was 2,520 requests for every step that looked (landing, the lake's handoff,
the checks); a listing of landing/ returns 1,000 names a request, so a window of more than
WHOLE_LISTING_SESSIONS sessions on S3 is listed that way. Locally a folder listing costs less
than walking every folder of the history, and stays per folder.

`Written` remembers, per landing file this process wrote, its record and how the file and its
record were listed right after the write (size and modification time). A later reader in the
same process (the run's checks, landing's own accounting) takes the record for a file whose
listing still shows both unchanged, instead of fetching the file and its record again; any
other file is read and hashed as before. A file rewritten with the same size within the same
second as the write (S3 keeps modification times in seconds) would be taken as unchanged: the
check is for damage done after the run, which always shows in one or the other.
"""

import collections
import datetime as dt

import pyarrow.fs as pafs

from stock_assets.lake.storage import LakeStorage

WHOLE_LISTING_SESSIONS = 16  # on S3, a longer window is listed from landing/ (ceil(objects / 1,000) requests)
MAX_REMEMBERED = 50_000  # files remembered at most (about 20 years of daily sessions; ~0.5 KB each)


def window_infos(storage: LakeStorage, sessions: list[dt.date]) -> list[pafs.FileInfo]:
    """Every file in the window's landing folders (landing/<session>/…), in the order of
    `sessions`, each folder's by path: what a listing of each folder gives."""
    if storage.is_local or len(sessions) <= WHOLE_LISTING_SESSIONS:
        folders = storage.map(lambda s: storage.file_infos(f"landing/{s}"), sessions)
        return [info for infos in folders for info in sorted(infos, key=lambda i: i.path)]
    wanted = {str(s) for s in sessions}
    by_folder: dict[str, list[pafs.FileInfo]] = collections.defaultdict(list)
    for info in storage.file_infos("landing"):
        parts = storage.relative(info.path).split("/", 2)
        if len(parts) == 3 and parts[1] in wanted:
            by_folder[parts[1]].append(info)
    return [info for s in sessions for info in sorted(by_folder.get(str(s), ()), key=lambda i: i.path)]


def window_paths(storage: LakeStorage, sessions: list[dt.date]) -> list[str]:
    return [storage.relative(i.path) for i in window_infos(storage, sessions)]


def _seen(info: pafs.FileInfo | None) -> tuple[int, int] | None:
    return None if info is None else (info.size, info.mtime_ns)


class Written:
    """Records of the landing files this process wrote, with how each file and its record were
    listed right after (oldest forgotten first beyond MAX_REMEMBERED)."""

    def __init__(self, max_files: int = MAX_REMEMBERED):
        self.max_files, self.files = max_files, collections.OrderedDict()

    def remember(self, storage: LakeStorage, records: dict[str, dict], record_path, infos: list[pafs.FileInfo]) -> None:
        """`records`: {landing CSV path: its record} just written; `infos`: a listing made after."""
        listed = {storage.relative(i.path): i for i in infos}
        for path, record in records.items():
            seen = (_seen(listed.get(path)), _seen(listed.get(record_path(path))))
            if None in seen:
                continue  # not listed: gone already, or not visible yet; a reader reads it
            key = (storage.url, path)
            self.files.pop(key, None)
            self.files[key] = (seen, record)
        while len(self.files) > self.max_files:
            self.files.popitem(last=False)

    def record(self, storage: LakeStorage, path: str, info: pafs.FileInfo | None, record_info: pafs.FileInfo | None) -> dict | None:
        """The record written with `path`, if the file and its record are listed as they were
        right after the write (`info`, `record_info`: how they are listed now); else None."""
        seen, record = self.files.get((storage.url, path), (None, None))
        return record if seen is not None and seen == (_seen(info), _seen(record_info)) else None


WRITTEN = Written()
