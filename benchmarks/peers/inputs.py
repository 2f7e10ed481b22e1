"""The peers' input: N symbols x 10 years of daily bars, one CSV per symbol in zipline's csvdir
format (`daily/<SYMBOL>.csv`: date,open,high,low,close,volume,dividend,split), written once into
benchmarks/results/work/ and reused by every later run of the same size.

The bars are the synthetic provider's (stock_assets.providers.synthetic: a seeded random walk per
symbol, OHLC consistent, 4 decimals), so the input is the same on every machine. No dividends
and no splits (dividend 0, split 1): every tool stores the bars as they are.

Runs in the product's environment (it imports stock_assets).
"""

import json
import os
import shutil
from pathlib import Path

from benchmarks.common import RESULTS

VERSION = 1  # bump when the files' content changes: a new cache folder
WORK = RESULTS / "work"
COLUMNS = ["date", "open", "high", "low", "close", "volume", "dividend", "split"]


def folder(symbols: list[str], sessions: list[str]) -> Path:
    return WORK / "peers-input" / f"v{VERSION}-{len(symbols)}sym-{sessions[0]}-{sessions[-1]}"


def ensure(symbols: list[str], sessions: list[str]) -> tuple[Path, dict]:
    """The input folder (holding `daily/`) for `symbols` x `sessions`, written if absent; and its
    description (symbols, sessions, files, bytes, seconds it took to write when it was written)."""
    root = folder(symbols, sessions)
    meta_path = root / "input.json"
    if meta_path.exists():
        return root, json.loads(meta_path.read_text())
    WORK.mkdir(parents=True, exist_ok=True)
    ignore = WORK / ".gitignore"  # the cache is never committed, without touching the repository's .gitignore
    if not ignore.exists():
        ignore.write_text("*\n")
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    import time

    started = time.perf_counter()
    write(tmp / "daily", symbols, sessions)
    files = sorted((tmp / "daily").iterdir())
    meta = {"version": VERSION, "symbols": len(symbols), "sessions": len(sessions), "first": sessions[0], "last": sessions[-1],
            "bars": len(symbols) * len(sessions), "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "write_s": round(time.perf_counter() - started, 2), "format": "zipline csvdir: daily/<SYMBOL>.csv, " + ",".join(COLUMNS)}
    (tmp / "input.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # a reader finds a whole folder or none
    return root, meta


def write(daily: Path, symbols: list[str], sessions: list[str]) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from stock_assets.providers.synthetic import synthetic_bars

    daily.mkdir(parents=True, exist_ok=True)
    days = [dt.date.fromisoformat(s) for s in sessions]
    options = pacsv.WriteOptions(quoting_header="none")
    for symbol in symbols:
        frame = synthetic_bars(symbol, days)
        n = len(frame)
        table = pa.table({
            "date": pa.array(days, pa.date32()),
            **{c: pa.array(frame[c].to_numpy(), pa.float64()) for c in ("open", "high", "low", "close")},
            "volume": pa.array(frame["volume"].to_numpy(), pa.int64()),
            "dividend": pa.array([0.0] * n, pa.float64()),
            "split": pa.array([1.0] * n, pa.float64()),
        })
        pacsv.write_csv(table, str(daily / f"{symbol}.csv"), options)
