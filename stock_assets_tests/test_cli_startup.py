"""What `python -m stock_assets.cli` loads: `--help`, a refused argument and `rebuild` answer
without Dagster and the code location (~2 s of imports), which load only when a run starts; the
`rebuild --table` choices it lists without loading the lake are lake/repair.py's tables."""

import subprocess
import sys
from pathlib import Path

import pytest

from stock_assets import cli
from stock_assets.lake.repair import TABLES

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from stock_assets import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(code, sorted({m.split(".")[0] for m in sys.modules} & {"dagster", "dagster_shared"}))
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["rebuild", "--help"], 0),
        (["rebuild", "--table", "lake/nothing"], 2),
        (["run", "--symbols", " ,"], 2),
        (["backfill", "--start", "2024-01-02", "--end", "2024-01-05", "--symbols", "bad symbol"], 2),
        (["rebuild", "--table", "lake/prices"], 0),  # an empty lake: rebuilt with no rows, said so
    ],
)
def test_the_cli_answers_without_loading_dagster_until_a_run_starts(tmp_path, argv, code):
    env = {"PATH": "/usr/bin:/bin", "STOCK_ASSETS_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}
    command = [sys.executable, "-c", PROBE, *argv]
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{code} []", done.stdout + done.stderr


def test_rebuild_offers_exactly_the_tables_lake_repair_rebuilds():
    assert cli.LAKE_TABLES == TABLES
