"""Logging to stderr as text or JSON lines, with every known secret redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
REDACTED = "***"
# Secrets shorter than this are too likely to match ordinary text to be worth redacting.
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_lock = threading.Lock()
_format: LogFormat = "text"


def register_secret(value: str | None) -> None:
    """Remember a secret so it is never written to a log, message or report."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def log_format() -> LogFormat:
    """The format chosen by the last `setup_logging` call."""
    return _format


def json_line(
    level: str, logger: str, message: str, created: float | None = None, fields: dict[str, object] | None = None
) -> str:
    """One log entry as a JSON object on one line, secrets redacted."""
    entry: dict[str, object] = {
        "ts": datetime.fromtimestamp(created, UTC).isoformat() if created else datetime.now(UTC).isoformat(),
        "level": level,
        "logger": logger,
        "message": message,
    }
    entry.update((key, value) for key, value in (fields or {}).items() if key not in entry)
    return redact(json.dumps(entry, default=str, ensure_ascii=False))


class JsonLinesWriter(io.TextIOBase):
    """A text stream that writes each line it is given to stderr as one JSON object.

    With `--log-format json` the CLI's progress and diagnostic output goes through this, so
    every line on stderr is JSON that cron and log shippers can parse.
    """

    def __init__(self, logger: str = "cogent", level: str = "info") -> None:
        self.logger = logger
        self.level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                sys.stderr.write(json_line(self.level, self.logger, line.rstrip()) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.write("\n")
        sys.stderr.flush()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, so a replaced stderr (tests, daemons) is followed."""

    @property  # type: ignore[override]
    def stream(self) -> io.TextIOBase:
        return sys.stderr  # type: ignore[return-value]

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: LogFormat) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        if self.fmt == "text":
            return redact(super().format(record))
        fields = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(record.levelname.lower(), record.name, record.getMessage(), record.created, fields)


def setup_logging(verbosity: int = 0, fmt: LogFormat = "text") -> None:
    """-v shows info, -vv debug (including HTTP traffic, headers never included)."""
    global _format
    _format = fmt
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = _StderrHandler()
    handler.setFormatter(_RedactingFormatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing.formatter, _RedactingFormatter):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO; keep that for -vv only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
