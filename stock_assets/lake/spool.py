"""A dropped file's rows set down block by block in a local temporary folder, then read back a
group of sessions at a time: what lets a file of any size land in bounded memory."""

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SPOOL_ROWS = 200_000  # good rows held before they are spooled
GROUP_ROWS = 100_000  # rows read back at a time (a session larger than this comes on its own)
SPAN_DAYS = 28  # good rows are spooled in record batches of sessions this close
EPOCH = dt.date(1970, 1, 1)
CHUNK_BYTES = 1 << 19


@dataclass
class Spool:
    """What one pass over a dropped file set down: good rows (Arrow IPC, sessions in order within
    each record batch), and the rows set aside as CSV ("unreadable", "rejected"), with counts."""

    folder: str
    rows: Counter = field(default_factory=Counter)  # good rows per session
    spans: list = field(default_factory=list)  # (first, last session) of record batch i of the good rows
    unreadable: Counter = field(default_factory=Counter)  # rows per column whose value is not a number or a date
    unreadable_rows: int = 0
    rejected_rows: int = 0  # rows with an invalid symbol or on no valid session (a row with both counts once)
    bad_symbol: int = 0
    not_session: int = 0
    writers: dict = field(default_factory=dict)
    pending: list = field(default_factory=list)  # good rows not spooled yet

    def path(self, kind: str) -> str:
        return f"{self.folder}/{kind}"

    def write(self, kind: str, table: pa.Table) -> None:
        if kind not in self.writers:
            csv = lambda path, schema: pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(quoting_header="none"))
            self.writers[kind] = (pa.ipc.new_file if kind == "good" else csv)(self.path(kind), table.schema)
        self.writers[kind].write_table(table)

    def add_good(self, bars: pa.Table) -> None:
        counts = pc.value_counts(bars["session"]).flatten()
        self.rows.update(dict(zip(counts[0].to_pylist(), counts[1].to_pylist())))
        self.pending.append(bars)
        if sum(t.num_rows for t in self.pending) >= SPOOL_ROWS:
            self.flush()

    def flush(self) -> None:
        """The good rows held, in sessions' order, a record batch per SPAN_DAYS: reading a group
        of sessions back reads only their batches."""
        if not self.pending:
            return
        bars, self.pending = pa.concat_tables(self.pending), []
        bars = bars.take(pc.sort_indices(bars["session"]))
        days = bars["session"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
        cuts = [0, *(np.flatnonzero(np.diff(days // SPAN_DAYS)) + 1), len(days)]
        for first, end in itertools.pairwise(cuts):
            self.write("good", bars.slice(first, end - first).combine_chunks())  # one record batch
            self.spans.append((EPOCH + dt.timedelta(days=int(days[first])), EPOCH + dt.timedelta(days=int(days[end - 1]))))

    def close(self) -> None:
        self.flush()
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def chunks(self, kind: str) -> Iterator[bytes]:
        with open(self.path(kind), "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    def groups(self) -> Iterator[pa.Table]:
        """The good rows, sessions in order, GROUP_ROWS rows (or one session) at a time."""
        with pa.OSFile(self.path("good")) as f:  # read, not mapped: mapped pages would count as the process's memory
            reader = pa.ipc.open_file(f)
            for group in _groups(self.rows):
                wanted = pa.array(group, pa.date32())
                batches = [i for i, (first, last) in enumerate(self.spans) if first <= group[-1] and last >= group[0]]
                yield pa.Table.from_batches([_only(reader.get_batch(i), wanted) for i in batches], reader.schema)


def _only(batch: pa.RecordBatch, sessions: pa.Array) -> pa.RecordBatch:
    return batch.filter(pc.is_in(batch["session"], value_set=sessions))


def _groups(rows: Counter) -> list[list[dt.date]]:
    groups, size = [[]], 0
    for session in sorted(rows):
        if groups[-1] and size + rows[session] > GROUP_ROWS:
            groups.append([])
            size = 0
        groups[-1].append(session)
        size += rows[session]
    return [group for group in groups if group]
