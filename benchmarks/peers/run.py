"""Item 8, peers (`make bench-peers`, or `python -m benchmarks peers` once the peers' environment
exists): N symbols x 10 years of per-symbol daily CSV files (benchmarks/peers/inputs.py) through

    ours      the data path as plain functions (benchmarks/peers/ours.py) into the lake on a local
              folder and the DuckDB warehouse; again with the lake on the S3 API of a moto server
              on the loopback interface (its own process)
    zipline   zipline-reloaded's csvdir bundle ingest           (benchmarks/peers/zipline_csvdir.py)
    qlib      qlib's bin format, dump_bin's steps                (benchmarks/peers/qlib_bin.py)
    arcticdb  ArcticDB writes on LMDB                            (benchmarks/peers/arcticdb_lmdb.py)
    pandas    the seed-style script: a Parquet file per symbol   (benchmarks/peers/pandas_parquet.py)

The peers run in their own environment, benchmarks/.peers-venv (benchmarks/peers/install.py),
never in the product's. Each ingest is a process of its own: wall time from start to exit,
peak RSS from the kernel (wait4's ru_maxrss), then the bytes its store holds on disk (allocated
blocks, as du counts them; on S3 the objects' sizes), then a second process times the two
queries. All stores live in one temporary folder, removed afterwards; the input is cached.

    BENCH_PEERS_SYMBOLS=50     N (default 500 x BENCH_SCALE)
    BENCH_PEERS=ours,pandas    some of ours, ours_s3, zipline, qlib, arcticdb, pandas only
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import (
    MARK,
    REPEATS,
    ROOT,
    START,
    BenchError,
    child_env,
    new_home,
    remove_home,
    scaled,
    sessions_after,
    universe,
)

VENV = ROOT / "benchmarks" / ".peers-venv"
PEERS_PYTHON = VENV / "bin" / "python"
SESSIONS = 2520  # 10 years
TIMEOUT_S = 3600
BUCKET = "peers-bench"
RUNS = {  # name -> (module, environment, what it is)
    "ours": ("ours", "product", "ours: data path -> lake (local folder) + DuckDB warehouse"),
    "ours_s3": ("ours", "product", "ours: data path -> lake on loopback S3 (moto) + DuckDB warehouse"),
    "zipline": ("zipline_csvdir", "peers", "zipline-reloaded: csvdir bundle ingest (bcolz + SQLite)"),
    "qlib": ("qlib_bin", "peers", "qlib: bin format, dump_bin's steps (one process)"),
    "arcticdb": ("arcticdb_lmdb", "peers", "ArcticDB: write per symbol, LMDB"),
    "pandas": ("pandas_parquet", "peers", "seed-style pandas: read_csv -> Parquet per symbol"),
}
LAYERS = ("landing", "lake/prices", "lake/deduped", "lake/dq_report")  # ours: what the lake holds
PACKAGES = ("zipline-reloaded", "pyqlib", "arcticdb", "pandas", "pyarrow", "numpy", "bcolz-zipline", "exchange_calendars")


def how_to_enable() -> str:
    return f"no peers environment ({VENV.relative_to(ROOT)}): `make bench-peers` creates it and runs this item"


def run(backfill: dict | None = None) -> dict:
    """Every run of RUNS (or BENCH_PEERS's) on the same input; `backfill`: item 2's result when
    the same `make bench` computed it (its figures are quoted beside the table, not in it)."""
    if not PEERS_PYTHON.exists():
        return {"skipped": how_to_enable()}
    chosen = [r.strip() for r in os.environ.get("BENCH_PEERS", ",".join(RUNS)).split(",") if r.strip()]
    if unknown := set(chosen) - set(RUNS):
        raise BenchError(f"BENCH_PEERS: unknown {sorted(unknown)}; choose from {', '.join(RUNS)}")
    symbols = universe(int(os.environ.get("BENCH_PEERS_SYMBOLS") or scaled(500)))
    sessions = sessions_after(START, SESSIONS)
    from benchmarks.peers import inputs

    root, meta = inputs.ensure(symbols, sessions)
    symbol, session = symbols[len(symbols) // 2], sessions[len(sessions) // 2]
    out = {"symbols": len(symbols), "sessions": len(sessions), "bars": len(symbols) * len(sessions), "input": meta | {"path": str(root)},
           "query_symbol": symbol, "query_session": session, "repeats": REPEATS, "expected": expected(root, symbol, session),
           "environment": peers_environment(), "git": git_state(), "load_before": os.getloadavg(), "runs": {}}
    args = {"input": str(root), "first": sessions[0], "last": sessions[-1], "symbol": symbol, "session": session, "repeats": REPEATS}
    home = new_home("peers")
    try:
        for name in [r for r in RUNS if r in chosen]:
            print(f" {name}", end="", flush=True, file=sys.stderr)
            try:
                out["runs"][name] = measure(name, args, home / name, symbols)
            except Exception as err:  # noqa: BLE001 - one peer failing must not lose the others
                out["runs"][name] = {"error": f"{type(err).__name__}: {err}"}
    finally:
        remove_home(home)
    out["load_after"] = os.getloadavg()  # the machine is shared: 1-, 5- and 15-minute load averages
    if backfill and "error" not in backfill:
        out["backfill"] = {"symbols": backfill["symbols"], "sessions": backfill["sessions"], "bars": backfill["bars"]} | {
            storage: backfill[storage]["ours"]["median_s"] for storage in ("sqlite", "postgres", "postgres_subset")
            if "ours" in backfill.get(storage, {})}
    write(out)
    return out


def measure(name: str, args: dict, work: Path, symbols: list[str]) -> dict:
    module, environment, label = RUNS[name]
    work.mkdir(parents=True)
    result = {"label": label}
    if environment == "product":
        with MotoServer() if name == "ours_s3" else contextlib.nullcontext() as endpoint:
            extra = s3_env(endpoint) if endpoint else {}
            env = child_env(work, symbols, **extra, PYTHONPATH=str(ROOT))
            python = sys.executable
            result["ingest"] = measured(python, module, args | {"phase": "ingest"}, env, work)
            lake = (lambda p: s3_bytes(endpoint, f"lake/{p}".rstrip("/"))) if endpoint else (lambda p: disk_bytes(work / "lake" / p))
            result["disk"] = lake("") | {"warehouse": disk_bytes(work, "warehouse.duckdb"), "layers": {layer: lake(layer) for layer in LAYERS}}
            result["queries"] = {"lake": measured(python, module, args | {"phase": "query", "store": "lake"}, env, work)}
            if name == "ours":  # the warehouse is the same in both runs
                result["queries"]["warehouse"] = measured(python, module, args | {"phase": "query", "store": "warehouse"}, env, work)
        return result
    store = work / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_", "PYTHON"))} | {"PYTHONPATH": str(ROOT)}
    result["ingest"] = measured(str(PEERS_PYTHON), module, args | {"phase": "ingest", "store": str(store)}, env, work)
    result["disk"] = disk_bytes(store)
    result["queries"] = {"store": measured(str(PEERS_PYTHON), module, args | {"phase": "query", "store": str(store)}, env, work)}
    return result


def measured(python: str, module: str, args: dict, env: dict, cwd: Path, timeout: float = TIMEOUT_S) -> dict:
    """`python -m benchmarks.peers.<module> '<args>'`: its result line, wall seconds from start to
    exit, CPU seconds (user + system) and peak RSS (the kernel's ru_maxrss), both from wait4."""
    out, err = cwd / f"{module}-{args['phase']}.out", cwd / f"{module}-{args['phase']}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.perf_counter()
        argv = [python, "-m", f"benchmarks.peers.{module}", json.dumps(args | {"spawned_at": time.time()})]
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        waited: dict = {}
        waiter = threading.Thread(target=lambda: waited.update(zip(("pid", "status", "usage"), os.wait4(proc.pid, 0))))
        waiter.start()
        waiter.join(timeout)
        wall, timed_out = time.perf_counter() - started, waiter.is_alive()
        if timed_out:
            proc.kill()
            waiter.join()
        proc.returncode = os.waitstatus_to_exitcode(waited["status"])  # reaped by wait4, not by Popen
    if timed_out:
        raise BenchError(f"{module} {args['phase']}: no result after {timeout:.0f} s")
    for line in reversed(out.read_text(errors="replace").splitlines()):
        if line.startswith(MARK):
            usage = waited["usage"]
            return json.loads(line[len(MARK):]) | {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    tail = err.read_text(errors="replace")[-3000:]
    raise BenchError(f"{module} {args['phase']} exited {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}\n{tail}")


def disk_bytes(folder: Path, only: str | None = None) -> dict:
    """Allocated bytes (du's count: blocks, so sparse files count what they hold) and apparent
    bytes of the files under `folder` (or of the files named `only`*, directly in it)."""
    allocated = apparent = files = 0
    seen = set()
    walk = [(str(folder), [], [p.name for p in folder.glob(f"{only}*")])] if only else os.walk(folder)
    for base, _, names in walk:
        for name in names:
            st = os.lstat(os.path.join(base, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated, apparent, files = allocated + st.st_blocks * 512, apparent + st.st_size, files + 1
    return {"bytes": allocated, "apparent_bytes": apparent, "files": files}


# --- the loopback S3 API ---------------------------------------------------------------------

class MotoServer:
    """moto's S3 API in a process of its own on a free loopback port, with BUCKET; yields its URL."""

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = Path(sys.executable).with_name("moto_server")
        if not server.exists():
            raise BenchError(f"{server} not found: moto[server] is a dev dependency (make install)")
        self.proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.__exit__()
                    raise BenchError(f"moto_server on {self.url} did not start") from None
                time.sleep(0.1)
        self._client().create_bucket(Bucket=BUCKET)
        return self.url

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return False


def s3_env(endpoint: str) -> dict:
    return {"STOCK_ASSETS_LAKE_URL": f"s3://{BUCKET}/lake", "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def s3_bytes(endpoint: str, prefix: str) -> dict:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    total = files = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            total, files = total + item["Size"], files + 1
    return {"bytes": total, "apparent_bytes": total, "files": files, "on": "S3 object sizes"}


# --- what the answers should be, and the peers' versions ----------------------------------------

def expected(root: Path, symbol: str, session: str) -> dict:
    """Rows and sum of close of both queries, from the input files themselves."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(include_columns=["date", "close"], column_types={"date": pa.date32(), "close": pa.float64()})
    day = pa.scalar(dt.date.fromisoformat(session), pa.date32())
    one = pacsv.read_csv(root / "daily" / f"{symbol}.csv", convert_options=options)
    rows = closes = 0
    for path in sorted((root / "daily").glob("*.csv")):
        table = pacsv.read_csv(path, convert_options=options)
        hit = table.filter(pc.equal(table["date"], day))
        rows, closes = rows + hit.num_rows, closes + (pc.sum(hit["close"]).as_py() or 0.0)
    return {"symbol": {"rows": one.num_rows, "close_sum": pc.sum(one["close"]).as_py()}, "session": {"rows": rows, "close_sum": closes}}


def peers_environment() -> dict:
    """The peers' Python, their versions, and what benchmarks/peers/install.py could not install."""
    code = ("import json, sys; from importlib import metadata as m\n"
            "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{'python': sys.version.split()[0], 'packages': {{n: v(n) for n in {list(PACKAGES)!r}}}}}))")
    proc = subprocess.run([str(PEERS_PYTHON), "-c", code], capture_output=True, text=True, check=False, timeout=120)
    info = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-500:]}
    report = VENV / "install.json"
    if report.exists():
        info["install"] = json.loads(report.read_text())
    return info


def git_state() -> dict:
    """The commit measured, and whether the code under it had changes not yet committed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": git("status", "--porcelain", "stock_assets", "benchmarks").splitlines()}


def write(out: dict) -> None:
    from benchmarks.common import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(out, indent=2, default=str))
