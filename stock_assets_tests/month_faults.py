"""The simulated month's faults, for real: a full file system, a torn data file, a run's process
killed with SIGKILL."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings
from stock_assets_tests.month import IN_PROGRESS

ROOT = Path(__file__).resolve().parents[1]
def fill_disk(folder: Path) -> Path:
    """Fill the file system `folder` is on to its last block; the file to delete to free it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


def damage_newest_file(storage: LakeStorage, prefix: str) -> str:
    """Cut the table's newest data file in half (a torn copy, a bad sector): its footer is gone."""
    newest = max(delta.current_files(storage, prefix), key=lambda p: storage.fs.get_file_info(storage.path(f"{prefix}/{p}")).mtime)
    path = Path(storage.path(f"{prefix}/{newest}"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return newest


def start_materialize(settings: Settings, day: dt.date, dagster_home: Path, **env: str) -> subprocess.Popen:
    """`dagster asset materialize` of one session, as someone runs it by hand, on the default instance."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}
    env = base | env | {"STOCK_ASSETS_HOME": str(settings.home), "DAGSTER_HOME": str(dagster_home), "STOCK_ASSETS_START": settings.start,
                        "STOCK_ASSETS_SYMBOLS": ",".join(settings.symbols), "STOCK_ASSETS_STEP_RETRY_DELAY_SECONDS": "0.2"}  # fmt: skip
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "stock_assets.definitions",
               "--select", "*", "--partition-range", f"{day}...{day}"]  # fmt: skip
    log = open(dagster_home / "materialize.log", "wb")  # noqa: SIM115 (the child writes it until it dies)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def kill_after_step(process: subprocess.Popen, instance: dg.DagsterInstance, step: str, seconds: float = 120) -> str:
    """SIGKILL `process` once its run has finished `step`; the run's id."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
            done = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            if any(e.step_key == step for e in done):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return run.run_id
        time.sleep(0.02)  # the run goes on for a second or two after the step: look often
    process.kill()
    said = Path(instance.root_directory, "materialize.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"the run never finished {step} within {seconds} s (exit {process.poll()}): {said}")
