"""Files other systems drop into landing/incoming/ (seed CSV format): validated, split by
session into the landing layout, or quarantined with the reason written beside them.

Good rows are never lost to bad ones: a row with a value that is not a number or a date, an
invalid symbol or a date that is not an NYSE session goes to quarantine/, the rest land. A
file that cannot be parsed at all is copied to quarantine/ whole, with its reason; the
dropped original is never deleted.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.lake.layout import quarantine, split_by_session, stamp, write_landing_file
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import SYMBOL_PATTERN
from stock_assets.seed_csv import LandingFormatError, from_landing_csv, split_unreadable_rows, to_landing_csv

INCOMING = "landing/incoming"


@dataclass
class DropOutcome:
    source: str
    digest: str  # of the file's bytes: the same content dropped twice is the same run
    sessions: list[dt.date] = field(default_factory=list)
    landed_rows: int = 0
    rejected_rows: int = 0
    quarantined: list[str] = field(default_factory=list)
    error: str | None = None


def land_dropped_file(storage: LakeStorage, path: str, sessions: set[dt.date], now: dt.datetime) -> DropOutcome:
    """Land one dropped file; `sessions` are the valid NYSE sessions."""
    body = storage.read_bytes(path)
    name = path.rsplit("/", 1)[1]
    outcome = DropOutcome(source=path, digest=hashlib.sha256(body).hexdigest()[:16])
    try:
        bars = from_landing_csv(body, source=f"landing:{name}", ingested_at=now, name=storage.uri(path))
    except LandingFormatError as err:
        good, bad, why = split_unreadable_rows(body)
        if good is None:  # the file itself cannot be read: a copy and the reason go to quarantine;
            outcome.error = str(err)  # the original stays where it was dropped (replace it to retry)
            outcome.quarantined = quarantine(storage, f"{stamp(now)}-{name}", body, f"{err}\n")
            return outcome
        outcome.quarantined = quarantine(storage, f"{stamp(now)}-{name}.unreadable.csv", bad, f"{storage.uri(path)}: {why}\n")
        outcome.rejected_rows = bad.count(b"\n") - 1
        bars = from_landing_csv(good, source=f"landing:{name}", ingested_at=now, name=storage.uri(path))

    bad_symbol = pc.invert(pc.fill_null(pc.match_substring_regex(bars["symbol"], SYMBOL_PATTERN.pattern), False))
    not_session = pc.invert(pc.fill_null(pc.is_in(bars["session"], value_set=pa.array(sorted(sessions), pa.date32())), False))
    rejected = pc.or_(bad_symbol, not_session)
    if pc.any(rejected).as_py():
        reasons = [f"{pc.sum(bad_symbol).as_py()} rows with an invalid symbol", f"{pc.sum(not_session).as_py()} rows on a date that is not an NYSE session from {min(sessions)} to today"]
        bad = bars.filter(rejected)
        outcome.rejected_rows += bad.num_rows
        outcome.quarantined += quarantine(storage, f"{stamp(now)}-{name}.rejected.csv", to_landing_csv(bad), f"{storage.uri(path)}: " + "; ".join(reasons) + "\n")
    by_session = split_by_session(bars.filter(pc.invert(rejected)))
    land = lambda session, rows: write_landing_file(storage, f"landing/{session}/ext-{outcome.digest}.csv", session, rows.num_rows, [to_landing_csv(rows)])
    storage.map(lambda item: land(*item), by_session.items())
    outcome.sessions = list(by_session)
    outcome.landed_rows = sum(rows.num_rows for rows in by_session.values())
    return outcome
