"""Forks `cogent sync` runs on request, so crash tests pay the import cost once, not per run.

Reads commands on stdin: `run ARGS...` forks a child that runs `cogent ARGS...` exactly as the
console script would and prints the child's pid; `wait PID` prints its exit status (or -SIGNAL).
"""

from __future__ import annotations

import os
import sys

import cogent_cli.sync.engine  # noqa: F401  (loaded before forking, so no run pays for it)
from cogent_cli.cli import main

for line in sys.stdin:
    command, *args = line.split()
    if command == "run":
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.argv = ["cogent", *args]
            try:
                main()
            except SystemExit as exc:
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            os._exit(0)
        print(pid, flush=True)
    elif command == "wait":
        _, status = os.waitpid(int(args[0]), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
