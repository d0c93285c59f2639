"""Finding audits: the built-ins and a workspace's own `audits/` folder, loaded the same way.

A folder holds Python modules (each defining one or more `@audit` functions) and `.sql` files
(a comment header naming the audit, then one query). A file that fails to load is reported with
its path and line; the other audits still load. Two audits with the same name are refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogent_cli.audits.model import BUSINESS_KEYS, SEVERITIES, Audit, Issue
from cogent_cli.builtins import builtin_dir
from cogent_cli.errors import CogentError, UsageError

HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SQL_HEADER_KEYS = {"name", "description", "severity", "owner", "owner_class", "warning_from", "error_from", "fix"}


class AuditLoadError(CogentError):
    """An audit file cannot be loaded or run; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, problem: str, hint: str | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}", hint or "Fix the audit file and run `cogent audit list` to check it.")
        self.path = path
        self.line = line
        self.problem = problem


class DuplicateAuditError(UsageError):
    pass


@dataclass
class Registry:
    audits: dict[str, Audit] = field(default_factory=dict)
    failures: list[AuditLoadError] = field(default_factory=list)

    def get(self, name: str) -> Audit:
        if name not in self.audits:
            broken = [f for f in self.failures if f.path.stem.replace("_", "-") == name]
            if broken:
                raise broken[0]
            known = ", ".join(sorted(self.audits)) or "none"
            raise UsageError(f"No audit named {name!r}", hint=f"Known audits: {known}. `cogent audit list` shows them.")
        return self.audits[name]


def workspace_audit_dir(root: Path) -> Path:
    return root / "audits"


def load_registry(workspace_root: Path | None = None, builtin: Path | None = None) -> Registry:
    """Every audit: the built-ins first, then the workspace's own, refusing a name defined twice."""
    registry = Registry()
    folders = [builtin or builtin_dir("audits")]
    if workspace_root is not None:
        folders.append(workspace_audit_dir(workspace_root))
    for folder in folders:
        for result in load_folder(folder):
            if isinstance(result, AuditLoadError):
                registry.failures.append(result)
                continue
            previous = registry.audits.get(result.name)
            if previous is not None:
                raise DuplicateAuditError(
                    f"Two audits are named {result.name!r}: {previous.path} and {result.path}",
                    hint="Rename one of them (the `name` in its header or @audit declaration); names must be unique.",
                )
            registry.audits[result.name] = result
    return registry


def load_folder(folder: Path) -> Iterator[Audit | AuditLoadError]:
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        try:
            if path.suffix == ".py":
                yield from load_python(path)
            elif path.suffix == ".sql":
                yield load_sql(path)
        except AuditLoadError as exc:
            yield exc


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"cogent_audit_{path.stem}_{digest}"


def error_line(path: Path, exc: BaseException) -> int | None:
    """The deepest line of `path` in the exception's traceback (or a SyntaxError's own line)."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == path.resolve():
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return line


def load_python(path: Path) -> list[Audit]:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AuditLoadError(path, None, "cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AuditLoadError(path, error_line(path, exc), f"{type(exc).__name__}: {exc}") from None
    found = [value for value in vars(module).values() if isinstance(value, Audit)]
    if not found:
        raise AuditLoadError(path, None, "defines no audit", hint="Decorate a function with @audit(name=..., ...).")
    for item in found:
        if not NAME.match(item.name):
            raise AuditLoadError(path, None, f"audit name {item.name!r} must be lower-case words joined by hyphens")
    return found


def _int_or_none(path: Path, line: int, key: str, value: str) -> int | None:
    if value.lower() in ("", "none", "off"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise AuditLoadError(path, line, f"{key} must be a whole number of at least 1 or `none` (got {value!r})")
    return int(value)


def load_sql(path: Path) -> Audit:
    """A `.sql` audit: `-- key: value` header lines, then one SELECT over the state file."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header: dict[str, str] = {}
    body_start = len(lines)
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        match = HEADER.match(stripped)
        if match:
            key, value = match.groups()
            if key not in SQL_HEADER_KEYS:
                raise AuditLoadError(
                    path, number, f"unknown header key {key!r}; known keys: {', '.join(sorted(SQL_HEADER_KEYS))}"
                )
            header[key] = value
            continue
        if stripped.startswith("--") or not stripped:
            continue
        body_start = number
        break
    if "name" not in header:
        raise AuditLoadError(path, 1, "the header has no `-- name: ...` line")
    if not NAME.match(header["name"]):
        raise AuditLoadError(path, 1, f"audit name {header['name']!r} must be lower-case words joined by hyphens")
    severity = header.get("severity")
    if severity is not None and severity not in SEVERITIES:
        line = next(i for i, t in enumerate(lines, 1) if t.strip().startswith("-- severity"))
        raise AuditLoadError(path, line, f"severity must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    query = "\n".join(lines[body_start - 1 :]).strip().rstrip(";")
    if not query:
        raise AuditLoadError(path, body_start, "has a header but no query")
    numbers = {key: i for i, t in enumerate(lines, 1) if (m := HEADER.match(t.strip())) for key in [m.group(1)]}
    warning_from = _int_or_none(path, numbers.get("warning_from", 1), "warning_from", header.get("warning_from", "1"))
    error_from = _int_or_none(path, numbers.get("error_from", 1), "error_from", header.get("error_from", "none"))
    sql_audit = SqlAudit(path=path, query=query, first_line=body_start, severity=severity)
    return Audit(
        name=header["name"],
        description=header.get("description", ""),
        run=sql_audit.run,
        owner=header.get("owner"),
        owner_class=header.get("owner_class"),
        warning_from=None if severity else warning_from,
        error_from=None if severity else error_from,
        fix=header.get("fix", ""),
        path=path,
        kind="sql",
    )


@dataclass(frozen=True)
class SqlAudit:
    path: Path
    query: str
    first_line: int
    severity: str | None

    def run(self, ctx: Any) -> Iterator[Issue]:
        # A read-only connection: a custom audit can look at everything and change nothing.
        database = Path(ctx.db.conn.execute("pragma database_list").fetchone()[2])
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            try:
                cursor = conn.execute(self.query, {"since": ctx.since.isoformat() if ctx.since else None})
            except sqlite3.Error as exc:
                raise AuditLoadError(self.path, self.line_of(str(exc)), f"SQL error: {exc}") from None
            for row in cursor:
                yield self.issue(dict(row))
        finally:
            conn.close()

    def line_of(self, message: str) -> int:
        """Best guess at the line an SQLite error refers to: where its quoted token first appears."""
        match = re.search(r'near "([^"]+)"|no such (?:table|column|function): (\S+)', message)
        token = next((g for g in match.groups() if g), None) if match else None
        if token:
            for offset, line in enumerate(self.query.splitlines()):
                if token.lower() in line.lower():
                    return self.first_line + offset
        return self.first_line

    def issue(self, row: dict[str, Any]) -> Issue:
        keys = {name: (str(row[name]) if row.get(name) is not None else None) for name in BUSINESS_KEYS}
        severity = row.get("severity") or self.severity
        if severity is not None and severity not in SEVERITIES:
            raise AuditLoadError(
                self.path, self.first_line, f"a row has severity {severity!r}; use info, warning or error"
            )
        known = {*BUSINESS_KEYS, "key", "title", "count", "severity", "fix"}
        evidence = {name: value for name, value in row.items() if name not in known}
        key = row.get("key") or "|".join(f"{k}={v}" for k, v in keys.items() if v) or _row_digest(row)
        return Issue(
            key=str(key),
            title=str(row.get("title") or key),
            count=int(row.get("count") or 1),
            severity=severity,
            evidence=evidence,
            fix=row.get("fix"),
            **keys,
        )


def _row_digest(row: dict[str, Any]) -> str:
    return hashlib.sha1(repr(sorted(row.items())).encode()).hexdigest()[:16]
