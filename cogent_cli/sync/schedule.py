"""Schedules: named cogent commands on cron expressions, run by one crontab line.

`cogent schedule run-due` (every minute from cron) claims each schedule whose latest fire time has
not run yet, in a transaction, so two overlapping invocations never run the same slot twice; it
then runs the command as a child process and records the outcome. A sync that finds the lock held
exits with `ExitStatus.LOCKED`, recorded as `locked` rather than as a failure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from croniter import croniter

from cogent_cli.errors import ExitStatus, UsageError
from cogent_cli.state import Store
from cogent_cli.sync.exceptions import now_iso

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
OUTPUT_TAIL = 4000


class ScheduleError(UsageError):
    pass


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    cron: str
    command: list[str]
    created_at: str
    next_run: datetime
    last_run: dict[str, object] | None


@dataclass(frozen=True)
class ScheduleOutcome:
    name: str
    due_at: str
    exit_status: int
    outcome: str


def _next(cron: str, after: datetime) -> datetime:
    return croniter(cron, after).get_next(datetime)


def _latest_fire(cron: str, now: datetime) -> datetime:
    """The latest fire time at or before `now`. Fire times are whole minutes, and croniter's get_prev
    from a fire time returns the one before it, so the current minute is matched first: cron starts
    `run-due` within the first second of the minute it fires in."""
    minute = now.replace(second=0, microsecond=0)
    return minute if croniter.match(cron, minute) else croniter(cron, minute).get_prev(datetime)


def add_schedule(store: Store, name: str, cron: str, command: list[str]) -> ScheduleInfo:
    command = command[1:] if command[:1] == ["--"] else command
    if not NAME.match(name):
        raise ScheduleError(f"Invalid schedule name {name!r}", hint="Use lower-case letters, digits, - and _.")
    if not croniter.is_valid(cron):
        raise ScheduleError(
            f"{cron!r} is not a cron expression", hint='Use five fields, e.g. "*/5 * * * *" for every five minutes.'
        )
    if not command:
        raise ScheduleError(
            "No command given", hint='Put the cogent command after --, e.g. cogent schedule add x "*/5 * * * *" -- sync'
        )
    if command[0] in ("cogent", Path(sys.argv[0]).name):
        command = command[1:]
    if command and command[0] == "schedule":
        raise ScheduleError("A schedule cannot run `cogent schedule`", hint="Schedule the command itself, e.g. `sync`.")
    if list(store.db.query("select 1 from schedules where name = ?", [name])):
        raise ScheduleError(
            f"A schedule named {name} already exists", hint=f"Remove it first: cogent schedule remove {name}"
        )
    with store.transaction() as db:
        db["schedules"].insert({"name": name, "cron": cron, "command": json.dumps(command), "created_at": now_iso()})
    return next(s for s in list_schedules(store) if s.name == name)


def remove_schedule(store: Store, name: str) -> None:
    with store.transaction() as db:
        if not db.execute("delete from schedules where name = ?", [name]).rowcount:
            raise ScheduleError(f"No schedule named {name}", hint="`cogent schedule list` shows them.")


def list_schedules(store: Store, now: datetime | None = None) -> list[ScheduleInfo]:
    now = now or datetime.now(UTC)
    found = []
    for row in store.db.query("select * from schedules order by name"):
        last = next(
            store.db.query(
                "select due_at, started_at, finished_at, exit_status, outcome from schedule_runs "
                "where schedule = ? order by id desc limit 1",
                [row["name"]],
            ),
            None,
        )
        found.append(
            ScheduleInfo(
                row["name"], row["cron"], json.loads(row["command"]), row["created_at"], _next(row["cron"], now), last
            )
        )
    return found


def claim_due(store: Store, now: datetime) -> list[tuple[str, list[str], str]]:
    """Schedules whose latest fire time has not been claimed yet; claiming is one transaction."""
    due = []
    with store.transaction() as db:
        for row in list(db.query("select * from schedules order by name")):
            fire = _latest_fire(row["cron"], now)
            created = datetime.fromisoformat(row["created_at"])
            last = datetime.fromisoformat(row["last_due_at"]) if row["last_due_at"] else None
            if fire < created.replace(second=0, microsecond=0) or (last is not None and fire <= last):
                continue
            db["schedules"].update(row["name"], {"last_due_at": fire.isoformat()})
            due.append((row["name"], json.loads(row["command"]), fire.isoformat()))
    return due


def cogent_argv(workspace_root: Path) -> list[str]:
    return [sys.executable, "-m", "cogent_cli", "--workspace", str(workspace_root)]


def run_due(store: Store, workspace_root: Path, now: datetime | None = None) -> list[ScheduleOutcome]:
    now = now or datetime.now(UTC)
    outcomes = []
    for name, command, due_at in claim_due(store, now):
        with store.transaction() as db:
            run_id = (
                db["schedule_runs"]
                .insert({"schedule": name, "due_at": due_at, "started_at": now_iso(), "outcome": "running"})
                .last_pk
            )
        env = {**os.environ, "COGENT_WORKSPACE": str(workspace_root)}
        done = subprocess.run(
            [*cogent_argv(workspace_root), *command], capture_output=True, text=True, env=env, check=False
        )
        status = done.returncode
        outcome = "ok" if status == 0 else "locked" if status == ExitStatus.LOCKED else f"failed (exit {status})"
        with store.transaction() as db:
            db["schedule_runs"].update(
                run_id,
                {
                    "finished_at": now_iso(),
                    "exit_status": status,
                    "outcome": outcome,
                    "output": (done.stdout + done.stderr)[-OUTPUT_TAIL:],
                },
            )
        outcomes.append(ScheduleOutcome(name, due_at, status, outcome))
    return outcomes


def crontab_line(workspace_root: Path) -> str:
    log = workspace_root / ".cogent" / "schedule.log"
    argv = " ".join(shlex.quote(part) for part in cogent_argv(workspace_root))
    return f"* * * * * {argv} --log-format json schedule run-due >> {shlex.quote(str(log))} 2>&1"
