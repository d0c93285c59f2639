"""Benchmark: how long `cogent` takes to start, per command, in a fresh process each time.

    python bench/startup.py            # median of 5 runs each
    python bench/startup.py --runs 9

Cron runs `cogent schedule run-due` every minute and playbooks run one `cogent` process per step,
so start-up time is paid constantly. Commands import the library only when they run; this prints
the wall time of `--version`, `--help`, `status` and `status --format json` on an empty workspace.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cogent_cli.workspace import init_workspace

COMMANDS = (["--version"], ["--help"], ["status"], ["status", "--format", "json"], ["playbook", "list"])


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws", name="Startup bench")
        base = [sys.executable, "-m", "cogent_cli", "--workspace", str(workspace.root)]
        timed([*base, "--version"])  # compile the bytecode once
        print(f"{'command':<28} {'median s':>9} {'min s':>7}")
        for command in COMMANDS:
            times = [timed([*base, *command]) for _ in range(args.runs)]
            print(f"{' '.join(['cogent', *command]):<28} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
