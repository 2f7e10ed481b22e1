"""A file dropped in landing/incoming/ is landed in bounded memory, whatever its size: a real,
big seed-format CSV landed in a child process of its own, whose peak RSS is measured."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from stock_assets.partitions import sessions_between
from stock_assets_tests.conftest import ROOT

pytestmark = pytest.mark.slow

SESSIONS = sessions_between("2024-01-02", "2024-01-02", "2024-12-31")  # 252 sessions: a file per session to write
ROW_BYTES = 52  # `S0001,2015-01-02,101.25,102.5,100.75,101.5,1234567` and its newline
LAND = """
import datetime as dt, sys, time
from stock_assets.lake.landing_drop import land_dropped_file
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
sessions = set(sessions_between("2015-01-02", "2015-01-02", "2024-12-31"))
started = time.monotonic()
outcome = land_dropped_file(LakeStorage(sys.argv[1]), sys.argv[2], sessions, dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
assert outcome.error is None, outcome.error
# VmHWM: this process image's own peak. ru_maxrss would count the parent's RSS at the fork too.
peak_mib = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024
print(outcome.landed_rows, outcome.rejected_rows, len(outcome.sessions), round(peak_mib), round(time.monotonic() - started, 1))
"""


def seed_file(path: Path, mib: int) -> int:
    """A seed-format CSV of about `mib` MiB, symbol by symbol over every session (each block of it
    holds rows of every session), with two rows to set aside at its end; its good rows."""
    symbols = -(-mib * 2**20 // ROW_BYTES // len(SESSIONS))
    rng = np.random.default_rng(mib)
    n = symbols * len(SESSIONS)
    close = np.round(rng.uniform(10, 500, n), 2)
    table = pa.table({
        "symbol": pa.array(np.repeat([f"S{i:04d}" for i in range(symbols)], len(SESSIONS))),
        "date": pa.array(np.tile(np.array(SESSIONS, "datetime64[D]"), symbols)),
        "open": close, "high": np.round(close * 1.01, 2), "low": np.round(close * 0.99, 2), "close": close,
        "volume": rng.integers(1, 10_000_000, n),
    })  # fmt: skip
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    with path.open("ab") as f:  # a symbol that is not one, and a Saturday: set aside, the rest lands
        f.write(b"ko$,2024-12-30,41.0,41.5,40.9,41.2,100\nS0000,2024-12-28,41.0,41.5,40.9,41.2,100\n")
    return n


def land_in_a_child(tmp_path: Path, mib: int) -> tuple[int, float]:
    lake = tmp_path / f"lake{mib}"
    (lake / "landing/incoming").mkdir(parents=True)
    rows = seed_file(lake / "landing/incoming/big.csv", mib)
    done = subprocess.run([sys.executable, "-c", LAND, str(lake), "landing/incoming/big.csv"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    landed, rejected, sessions, peak_mib, seconds = done.stdout.split()
    assert (int(landed), int(rejected), int(sessions)) == (rows, 2, len(SESSIONS))
    print(f"{mib} MiB dropped: {rows:,} rows landed in {seconds} s, peak RSS {peak_mib} MiB")
    return int(peak_mib), float(seconds)


def test_a_dropped_file_lands_in_memory_that_does_not_grow_with_its_size(tmp_path):
    small, _ = land_in_a_child(tmp_path, 24)
    big, _ = land_in_a_child(tmp_path, 96)
    assert big - small < 64, f"peak RSS {small} MiB for 24 MiB dropped, {big} MiB for 96 MiB"
