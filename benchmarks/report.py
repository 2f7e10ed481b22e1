"""The table on stdout and the JSON in benchmarks/results/latest.json: every measurement
beside its goal, pass or MISS, plus the machine it ran on."""

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata

from benchmarks.common import PG_URL, RESULTS, ROOT, SCALE

GIB = 1024  # MiB
PACKAGES = ("dagster", "dagster-postgres", "duckdb", "pyarrow", "numpy", "pandas", "TA-Lib", "psycopg2-binary", "SQLAlchemy",
            "exchange_calendars", "plotly")


def machine() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "packages": versions, "bench_scale": SCALE}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        import psycopg2

        with psycopg2.connect(PG_URL, connect_timeout=5) as con, con.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgresql"] = cur.fetchone()[0]
    except Exception as err:  # noqa: BLE001 - machine info is best effort
        info.setdefault("postgresql", f"unavailable: {type(err).__name__}")
    return info


def seconds(x: float) -> str:
    return f"{x:.2f} s"


def rate(x: float) -> str:
    return f"{x / 1e6:.2f} M rows/s" if x >= 1e6 else f"{x / 1e3:.0f} k rows/s"


def mib(x: float) -> str:
    return f"{x:,.0f} MiB"


def row(item: str, what: str, value: str, goal: str = "", ok: bool | None = None) -> tuple:
    return item, what, value, goal, "info" if ok is None else ("pass" if ok else "MISS")


def rows_datapath(r: dict) -> list[tuple]:
    out = [row("1", f"data path, {r['symbols']} sym x {r['sessions']} sessions = {r['bars']:,} bars", "", "")]
    out.append(row("1", "  synthetic generation (not in totals)", seconds(r["generate_s"])))
    for s in r["stages"]:
        extra = " (extra)" if s["stage"] in ("publish", "dashboard") else ""
        out.append(row("1", f"  {s['stage']}{extra}", f"{seconds(s['median_s'])} (x{len(s['seconds'])})  {rate(s['rows_per_s'])}  peak so far {mib(s['peak_rss_mib'])}"))
    out.append(row("1", "  total, data path stages (raw..indicators)", seconds(r["core_total_s"]), "<= 10 s", r["core_total_s"] <= 10))
    out.append(row("1", "  total, with publish + dashboard", seconds(r["all_total_s"])))
    out.append(row("1", "  peak RSS (every stage in one process, as a run)", mib(r["peak_rss_mib"]), "<= 1,229 MiB", r["peak_rss_mib"] <= 1.2 * GIB))
    return out


def rows_backfill(r: dict) -> list[tuple]:
    out = [row("2", f"orchestrated backfill, one run, {r['symbols']} sym x {r['sessions']} sessions", "")]
    labels = (("sqlite", "SQLite (default)"), ("postgres", "PostgreSQL, batch 1000"),
              ("postgres_subset", "PostgreSQL, batch 1000, range planned events"))
    for storage, label in labels:
        m = r.get(storage, {})
        if "error" in m:
            out.append(row("2", f"  {label}", f"ERROR {m['error'][:60]}", "<= 1.2 x floor", False))
            continue
        ours, floor = m["ours"], m["floor"]
        ok = ours["success"] and floor["success"]
        out.append(row("2", f"  {label}: floor / ours", f"{seconds(floor['median_s'])} / {seconds(ours['median_s'])}"
                       f"  ({floor['events'][0]:,} / {ours['events'][0]:,} events)" + ("" if ok else "  RUN FAILED")))
        out.append(row("2", f"  {label}: ours / floor", f"{m['ratio']:.2f} x", "<= 1.2", ok and m["ratio"] <= 1.2))
        for name, x in (("floor", floor), ("ours", ours)):
            p = x.get("phases", {})
            out.append(row("2", f"    {name}: planned events / steps / other", f"{p.get('planning', 0):.1f} / {p.get('steps', 0):.1f} / {p.get('other', 0):.1f} s"))
        dash = ours.get("steps", {}).get("dashboard", 0.0)
        out.append(row("2", "    ours without its dashboard step / floor", f"{(ours['median_s'] - dash) / floor['median_s']:.2f} x  (dashboard {seconds(dash)})"))
    return out


def rows_incremental(r: dict) -> list[tuple]:
    a, b = r["1y"], r["10y"]
    return [
        row("3", f"incremental day {r['new_session']}, {r['symbols']} sym, whole graph, one run (median of {len(r['1y']['seconds'])} / {len(r['10y']['seconds'])})", ""),
        row("3", f"  {a['history_sessions']} sessions behind / {b['history_sessions']} behind",
            f"{seconds(a['median_s'])} / {seconds(b['median_s'])}" + ("" if a["success"] and b["success"] else "  RUN FAILED")),
        row("3", "  ratio 10 y / 1 y", f"{r['ratio']:.2f} x", "<= 1.2", r["ratio"] <= 1.2 and a["success"] and b["success"]),
        row("3", "  steps without the dashboard: 1 y / 10 y", f"{without(a):.2f} s / {without(b):.2f} s  ({without(b) / without(a):.2f} x)"),
        row("3", "  the dashboard step: 1 y / 10 y", f"{a['steps'].get('dashboard', 0):.2f} s / {b['steps'].get('dashboard', 0):.2f} s"),
    ]


def without(run: dict, step: str = "dashboard") -> float:
    return sum(v for k, v in run.get("steps", {}).items() if k != step)


def rows_overhead(r: dict) -> list[tuple]:
    return [
        row("4", f"one session from the CLI, {r['symbols']} sym, {r['session']}", ""),
        row("4", f"  CLI wall (median of {len(r['cli_seconds'])})", f"{seconds(r['cli_s'])}  (run {seconds(r['run_s'])}, outside the run {seconds(r['outside_run_s'])})"),
        row("4", "  in the run: steps / dashboard step / the rest", f"{r['run_phases']['steps']:.2f} / {r['run_steps'].get('dashboard', 0):.2f} / "
            f"{r['run_s'] - r['run_phases']['steps']:.2f} s"),
        row("4", "  `import stock_assets.definitions` alone", seconds(r["import_s"])),
        row("4", "  same work as plain functions, with the fetch", f"{seconds(r['plain_s'])}  (synthetic fetch {seconds(r.get('plain_fetch_s', 0))})"),
        row("4", "  CLI - plain functions", seconds(r["overhead_s"]), "<= 3 s", r["overhead_s"] <= 3),
    ]


def rows_loader(r: dict) -> list[tuple]:
    if "error" in r:
        return [row("5", "warehouse load (benchmarks/warehouse_load.py)", r["error"][:80], ">= 10 x ORM", False)]
    return [
        row("5", f"PostgreSQL load, {r['rows']:,} bars: ours / ORM bulk save", f"{rate(r['loader_rows_per_s'])} / {rate(r['orm_rows_per_s'])}"),
        row("5", "  speedup", f"{r['speedup']:.1f} x", ">= 10 x", r["speedup"] >= 10),
    ]


def rows_indicators(r: dict) -> list[tuple]:
    return [
        row("6", f"indicators, {r['rows']:,} bars: ours / TA-Lib loop / pandas",
            f"{rate(r['ours']['rows_per_s'])} / {rate(r['talib_loop']['rows_per_s'])} / {rate(r['pandas']['rows_per_s'])}"),
        row("6", "  ours / TA-Lib loop", f"{r['ratio_vs_talib_loop']:.2f} x", ">= 0.5 x", r["ratio_vs_talib_loop"] >= 0.5),
        row("6", "  ours / pandas rolling+ewm", f"{r['ratio_vs_pandas']:.2f} x"),
    ]


def rows_intraday(r: dict) -> list[tuple]:
    out = [row("7", f"intraday, {r['symbols']} sym x 1-min x {r['sessions']} sessions = {r['rows']:,} bars", "")]
    out.append(row("7", "  generation (not in total)", seconds(r["generate_s"])))
    out += [row("7", f"  {name}", f"{seconds(s['median_s'])}  {rate(s['rows_per_s'])}") for name, s in r["stages"].items()]
    out.append(row("7", "  total / peak RSS", f"{seconds(r['total_s'])} / {mib(r['peak_rss_mib'])}"))
    return out


ROWS = {"datapath": rows_datapath, "backfill": rows_backfill, "incremental": rows_incremental, "overhead": rows_overhead,
        "loader": rows_loader, "indicators": rows_indicators, "intraday": rows_intraday}


def table(results: dict) -> str:
    lines = []
    for name, result in results.items():
        if "error" in result and name != "loader":
            lines.append(row(name, "ERROR", result["error"].splitlines()[0][:100], "", False))
            continue
        try:
            lines += ROWS[name](result)
        except (KeyError, TypeError) as err:
            lines.append(row(name, "ERROR reading result", repr(err)[:100], "", False))
    widths = [max(len(str(line[i])) for line in lines + [("#", "measurement", "value", "goal", "status")]) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    header = fmt.format("#", "measurement", "value", "goal", "status")
    return "\n".join([header, "-" * len(header)] + [fmt.format(*line) for line in lines])


def write_json(results: dict, started: dt.datetime, wall_s: float) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    doc = {"started_at": started.isoformat(), "wall_s": wall_s, "machine": machine(), "results": results}
    path.write_text(json.dumps(doc, indent=2, default=str))
    return str(path.relative_to(ROOT))


# --- item 8, peers: a row in the table above, and a table of its own -------------------------

def rows_peers(r: dict) -> list[tuple]:
    if "skipped" in r:
        return [row("8", "peers (zipline, qlib, ArcticDB, pandas) on the same input", f"skipped: {r['skipped']}")]
    out = [row("8", f"peers, the same CSV input: {r['symbols']} sym x {r['sessions']} sessions = {r['bars']:,} bars", "the peers table below")]
    for name, run in r["runs"].items():
        if "error" in run:
            out.append(row("8", f"  {name}", f"ERROR {run['error'].splitlines()[0][:80]}", "", False))
        else:
            out.append(row("8", f"  {name}", f"ingest {seconds(run['ingest']['wall_s'])}, peak {mib(run['ingest']['peak_rss_mib'])}"))
    return out + peers_goals({name: run["ingest"] for name, run in r["runs"].items() if "ingest" in run})


def peers_goals(ingest: dict) -> list[tuple]:
    """Issue 26's goals on this run's figures: ours against the fastest and the leanest peer, and on S3 against local."""
    out, peers = [], {name: x for name, x in ingest.items() if not name.startswith("ours")}
    if "ours" in ingest and peers:
        fastest = min(peers, key=lambda name: peers[name]["wall_s"])
        leanest = min(peers, key=lambda name: peers[name]["peak_rss_mib"])
        ratio = ingest["ours"]["wall_s"] / peers[fastest]["wall_s"]
        out.append(row("8", f"  ours ingest wall / the fastest peer's ({fastest})", f"{ratio:.2f} x", "<= 0.8 x", ratio <= 0.8))
        ratio = ingest["ours"]["peak_rss_mib"] / peers[leanest]["peak_rss_mib"]
        out.append(row("8", f"  ours peak RSS / the leanest peer's ({leanest})", f"{ratio:.2f} x", "<= 2 x", ratio <= 2))
    if "ours" in ingest and "ours_s3" in ingest:
        ratio = ingest["ours_s3"]["wall_s"] / ingest["ours"]["wall_s"]
        out.append(row("8", "  ours with the lake on S3 (moto, loopback) / local", f"{ratio:.2f} x", "<= 3 x", ratio <= 3))
    return out


ROWS["peers"] = rows_peers


def latency(s: float) -> str:
    if s < 0.01:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def size(n: float) -> str:
    m = n / 2**20
    return f"{m:,.1f} MiB" if m < 10 else f"{m:,.0f} MiB"


def answers(q: dict, expected: dict) -> str:
    """ok when both queries return the input's rows and sum of close (float32 and zipline's
    thousandths allowed for: 1e-4 relative)."""
    wrong = []
    for name in ("symbol", "session"):
        got, want = q[name], expected[name]
        if got["rows"] != want["rows"]:
            wrong.append(f"{name}: {got['rows']} rows, not {want['rows']}")
        elif abs(got["close_sum"] - want["close_sum"]) > 1e-4 * abs(want["close_sum"]) + 1e-6:
            wrong.append(f"{name}: close sum {got['close_sum']:.4f}, not {want['close_sum']:.4f}")
    return "ok" if not wrong else "WRONG " + "; ".join(wrong)


def peers_table(r: dict) -> str:
    """Ingest wall, peak RSS, bytes on disk and the two query latencies of every run on the same input."""
    header = ("store", "ingest wall (after imports)", "CPU", "peak RSS", "on disk", "1 sym x 10 y: first / warm",
              f"all {r['symbols']} sym x 1 session: first / warm", "answers")
    lines = []
    for name, run in r["runs"].items():
        if "error" in run:
            lines.append((name, "ERROR (below)", "", "", "", "", "", ""))
            continue
        ingest, disk = run["ingest"], run["disk"]
        total = disk["bytes"] + disk.get("warehouse", {}).get("bytes", 0)
        first = True
        for store, q in run["queries"].items():
            label = run["label"] if first else f"  the same, queried from the {'DuckDB warehouse' if store == 'warehouse' else store}"
            cells = (f"{seconds(ingest['wall_s'])} ({seconds(ingest['work_s'])})", seconds(ingest["cpu_s"]), mib(ingest["peak_rss_mib"]), size(total)) if first else (
                "", "", "", size(disk["warehouse"]["bytes"]) if store == "warehouse" else "")
            lines.append((label, *cells, f"{latency(q['symbol']['first_s'])} / {latency(q['symbol']['median_s'])}",
                          f"{latency(q['session']['first_s'])} / {latency(q['session']['median_s'])}", answers(q, r["expected"])))
            first = False
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    title = (f"Peers (item 8): the same input, {r['symbols']} symbols x {r['sessions']:,} sessions = {r['bars']:,} bars "
             f"({r['input']['files']} CSV files, {size(r['input']['bytes'])})")
    text = [title, fmt.format(*header), "-" * len(fmt.format(*header))]
    text += [fmt.format(*line) for line in lines]
    return "\n".join(text + [""] + [f"  {note}" for note in peers_notes(r)])


def peers_notes(r: dict) -> list[str]:
    notes = [
        (f"Queries: {r['query_symbol']}'s {r['sessions']:,} bars; every symbol's bar of {r['query_session']}; open/high/low/close/volume. "
         f"first: the first call in a fresh process once the store is open; warm: median of {r['repeats']} more."),
        ("Ingest wall: the process from start to exit, its imports included; CPU: its user + system seconds (above the wall: more than one core); "
         "peak RSS: the kernel's (wait4); on disk: allocated blocks (du), S3: object sizes."),
    ]
    opened = [f"{name} {latency(run['queries'][next(iter(run['queries']))]['open_s'])}" for name, run in r["runs"].items() if "queries" in run]
    if opened:
        notes.append("Opening the store before the first query: " + ", ".join(opened) + ".")
    notes += [f"{name}: ERROR {run['error'].splitlines()[0][:300]}" for name, run in r["runs"].items() if "error" in run]
    for name in ("ours", "ours_s3"):
        run = r["runs"].get(name, {})
        if "ingest" not in run:
            continue
        stages = ", ".join(f"{s['stage']} {s['seconds']:.2f}" for s in run["ingest"]["stages"])
        layers = ", ".join(f"{k} {size(v['bytes'])} ({v['files']:,} files)" for k, v in run["disk"].get("layers", {}).items())
        notes.append(f"{name}: {stages} s; the lake's layers: {run['ingest'].get('lake_layout', '?')}; on disk: {layers}, "
                     f"warehouse {size(run['disk']['warehouse']['bytes'])}.")
        failed = run["ingest"].get("checks_failed") or []
        if failed:
            notes.append(f"{name}: checks not passed: " + ", ".join(f"{f['check_name']} ({f['severity']}, {f['sessions']} sessions)" for f in failed) + ".")
    b = r.get("backfill")
    if b:
        runs = ", ".join(f"{k} {seconds(v)}" for k, v in b.items() if k not in ("symbols", "sessions", "bars"))
        notes.append(f"Orchestrated backfill (item 2 of this run): {b['symbols']} sym x {b['sessions']} sessions = {b['bars']:,} bars of the synthetic "
                     f"provider, the whole graph in one run: {runs}. Not in the table: not this input.")
    else:
        notes.append("Orchestrated backfill: not in this run (item 2: `python -m benchmarks backfill peers`), and not in the table either way: "
                     "item 2 runs the whole graph over 252 sessions of the synthetic provider, not these files.")
    if "load_before" in r:
        notes.append(f"Load average (1, 5, 15 min) on this {os.cpu_count()}-core machine: before {', '.join(f'{x:.1f}' for x in r['load_before'])}, "
                     f"after {', '.join(f'{x:.1f}' for x in r['load_after'])}.")
    env = r.get("environment", {})
    versions = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    notes.append(f"Peers' environment (benchmarks/.peers-venv): Python {env.get('python')}, {versions}.")
    failed = env.get("install", {}).get("failed") or {}
    if failed:
        notes.append("Not installable here: " + "; ".join(f"{k} ({(v or ['?'])[-1][:80]})" for k, v in failed.items()) + ".")
    notes.append("qlib: dump_bin.py is not in the pyqlib wheel and PyPI has no pyqlib sdist; benchmarks/peers/qlib_bin.py does its steps "
                 "with qlib's storage classes (FileInstrumentStorage's writer is broken in 0.9.7: the instruments file as dump_bin writes it).")
    return notes
