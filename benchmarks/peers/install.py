"""The peers' environment (`make bench-peers`): benchmarks/.peers-venv with
benchmarks/peers/requirements.txt, apart from the product's dependencies.

All the requirements in one pip call first; if that fails, each alone, so that the peers that do
install are still measured. What could not be installed is written to
benchmarks/.peers-venv/install.json, which the benchmark reports. Standard library only: run it
with any Python 3.11+ (`python3 benchmarks/peers/install.py`).
"""

import datetime as dt
import json
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".peers-venv"
REQUIREMENTS = HERE / "requirements.txt"


def pip(*args: str) -> subprocess.CompletedProcess:
    command = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def main() -> int:
    if not (VENV / "bin" / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip("install", "--upgrade", "pip")
    requirements = [line.strip() for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    print(f"installing into {VENV.name}: {', '.join(requirements)}", flush=True)
    failed = {}
    together = pip("install", "-r", str(REQUIREMENTS))
    if together.returncode != 0:
        print("  together they do not install; one at a time:", flush=True)
        for requirement in requirements:
            alone = pip("install", requirement)
            if alone.returncode != 0:
                failed[requirement] = (alone.stderr or alone.stdout).strip().splitlines()[-5:]
                print(f"  {requirement}: FAILED: {failed[requirement][-1] if failed[requirement] else ''}", flush=True)
    report = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "python": sys.version.split()[0],
              "requirements": requirements, "failed": failed}
    (VENV / "install.json").write_text(json.dumps(report, indent=2))
    print(f"{VENV.name}: {len(requirements) - len(failed)} of {len(requirements)} installed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
