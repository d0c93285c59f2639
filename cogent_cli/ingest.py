"""`cogent ingest`: exports and captured payloads from files into the inbox, then normalised.

Files are streamed, never loaded whole: CSV reports (Peoplevox report exports, Scend exports) row by
row, JSON Lines line by line, and a JSON array element by element. Each record becomes one inbox row
whose idempotency key is the source's natural key when the kind has one (so a despatch arriving by
file and by pull is stored once) and otherwise the file name plus a hash of the record. Ingesting the
same file twice therefore stores nothing new.

The kind of a CSV file is detected from its header, that of a JSON record from its fields (each
normaliser declares what identifies its kind); `kind=` overrides detection.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cogent_cli.collector import fewer_collections
from cogent_cli.config import SOURCE_SYSTEMS, Config
from cogent_cli.errors import UsageError
from cogent_cli.inbox import (
    CSV_ERROR_KEY,
    Inbox,
    InboxItem,
    NormaliseSummary,
    group_of_record,
    open_group_start,
    utc_now,
)
from cogent_cli.normalise import json_text
from cogent_cli.normalise.base import NormaliseError, Normaliser, Record, load_normalisers
from cogent_cli.normalise.fields import canon
from cogent_cli.state import Store

RECEIVE_BATCH = 5000
# Records stored and normalised per transaction: large, because each commit waits for the disk.
INGEST_BATCH = 20_000
JSON_CHUNK = 1 << 16
# The CSV module's default field limit (128 KiB) is too small for some report cells.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

Progress = Callable[[str, int], None]
Entry = tuple[Normaliser, str, str, Record | None]


class IngestError(UsageError):
    """A file cannot be ingested as given."""


@dataclass
class IngestSummary:
    files: int = 0
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    normalised: NormaliseSummary | None = None


def kinds_of(system: str) -> dict[str, Normaliser]:
    return {kind: n for (sys_name, kind), n in sorted(load_normalisers().items()) if sys_name == system}


def describe_kinds(system: str, config: Config) -> str:
    lines = []
    for kind, normaliser in kinds_of(system).items():
        columns = sorted(normaliser.header_columns(config))
        how = f"CSV with columns {', '.join(columns)}" if columns else "JSON"
        lines.append(f"  {kind}: {normaliser.description} ({how})")
    return "\n".join(lines) or "  (none)"


def _unknown_kind(system: str, config: Config, what: str) -> IngestError:
    return IngestError(
        f"Cannot tell which kind of {system} payload {what} is.\nKinds:\n{describe_kinds(system, config)}",
        hint=f"Name it with --kind KIND, or check the file is a {system} export.",
    )


def record_key(normaliser: Normaliser | None, record: Record, fallback: str | Callable[[], str]) -> str:
    """Inbox idempotency key of a record: its natural key when the kind has one, else the fallback."""
    if normaliser is not None and normaliser.natural_key is not None:
        try:
            natural = normaliser.natural_key(record)
        except (NormaliseError, KeyError, TypeError, ValueError):
            natural = ""
        if natural.strip("|"):
            return f"{normaliser.kind}:{natural}"
    return fallback() if callable(fallback) else fallback


def _file_key(name: str, payload: str) -> str:
    return f"file:{name}:{hashlib.sha256(payload.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def detect_csv_kind(system: str, config: Config, header: Sequence[str], path: Path) -> Normaliser:
    present = {canon(name) for name in header}
    best: tuple[int, Normaliser] | None = None
    for normaliser in kinds_of(system).values():
        columns = {canon(c) for c in normaliser.header_columns(config)}
        if columns and columns <= present and (best is None or len(columns) > best[0]):
            best = (len(columns), normaliser)
    if best is None:
        raise _unknown_kind(system, config, f"{path} (header: {', '.join(header[:8])}...)")
    return best[1]


def detect_json_kind(system: str, record: Record, preferred: Normaliser | None = None) -> Normaliser | None:
    if preferred is not None and preferred.matches is not None and _matches(preferred, record):
        return preferred
    for normaliser in kinds_of(system).values():
        if normaliser.matches is not None and _matches(normaliser, record):
            return normaliser
    return None


def _matches(normaliser: Normaliser, record: Record) -> bool:
    try:
        return bool(normaliser.matches(record))  # type: ignore[misc]
    except Exception:
        return False


class _CountingReader(io.RawIOBase):
    """Counts the bytes read so the caller can report progress through a file."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw = raw
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if count and self.progress is not None:
            self.progress("bytes", count)
        return count or 0


@dataclass
class _Source:
    """One file being read: yields (normaliser, body, idempotency key, decoded record or None) per record."""

    path: Path
    system: str
    config: Config
    kind: Normaliser | None
    progress: Progress | None

    def open_text(self) -> io.TextIOWrapper:
        raw = open(self.path, "rb")  # noqa: SIM115 - closed through the wrapper
        return io.TextIOWrapper(
            io.BufferedReader(_CountingReader(raw, self.progress), 1 << 20), encoding="utf-8-sig", newline=""
        )

    def first_char(self) -> str:
        with open(self.path, "rb") as handle:
            head = handle.read(4096).decode("utf-8-sig", errors="replace").lstrip()
        return head[:1]

    def records(self) -> Iterator[Entry]:
        first = self.first_char()
        if first == "[" or (first == "{" and self.path.suffix.lower() == ".json"):
            return self.json_document()
        if first == "{":
            return self.json_lines()
        return self.csv_rows()

    def csv_rows(self) -> Iterator[Entry]:
        with self.open_text() as text:
            reader = csv.reader(text)
            header = next(reader, None)
            if not header:
                return
            header = [name.strip() for name in header]
            normaliser = self.kind or detect_csv_kind(self.system, self.config, header, self.path)
            for values in reader:
                if not "".join(values).strip():  # blank cells only
                    continue
                record: dict[str, Any] = dict(zip(header, values, strict=False))
                if len(values) != len(header):
                    record[CSV_ERROR_KEY] = f"row has {len(values)} cells, the header has {len(header)}"
                body = json_text.dumps(record)
                key = record_key(normaliser, record, lambda b=body: _file_key(self.path.name, b))
                yield normaliser, body, key, record

    def _json_record(self, record: Any, body: str, previous: Normaliser | None, where: str) -> Normaliser:
        normaliser = self.kind
        if normaliser is None and isinstance(record, dict):
            normaliser = detect_json_kind(self.system, record, previous)
        if normaliser is None:
            if previous is None:
                raise _unknown_kind(self.system, self.config, where)
            normaliser = previous  # normalisation quarantines it with the precise reason
        return normaliser

    def json_lines(self) -> Iterator[Entry]:
        previous: Normaliser | None = None
        with self.open_text() as text:
            for number, line in enumerate(text, start=1):
                body = line.strip()
                if not body:
                    continue
                try:
                    record: Any = json_text.loads(body)
                except ValueError:
                    record = None
                previous = self._json_record(record, body, previous, f"{self.path} line {number}")
                natural = record if isinstance(record, dict) else None
                key = record_key(previous, natural or {}, lambda b=body: _file_key(self.path.name, b))
                yield previous, body, key, natural

    def json_document(self) -> Iterator[Entry]:
        previous: Normaliser | None = None
        for index, record in enumerate(iter_json_values(self.open_text(), self.path)):
            body = json_text.dumps(record)
            previous = self._json_record(record, body, previous, f"{self.path} element {index}")
            natural = record if isinstance(record, dict) else None
            key = record_key(previous, natural or {}, lambda b=body: _file_key(self.path.name, b))
            yield previous, body, key, natural


def iter_json_values(text: io.TextIOBase, path: Path) -> Iterator[Any]:
    """The elements of a top-level JSON array (or a single JSON value), decoded one at a time."""
    decoder = json.JSONDecoder()
    with text:
        buffer = text.read(JSON_CHUNK).lstrip()
        in_array = buffer.startswith("[")
        position = 1 if in_array else 0
        finished = False
        while True:
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n,":
                    position += 1
                if position < len(buffer) or finished:
                    break
                buffer, position = text.read(JSON_CHUNK), 0
                finished = not buffer
            if position >= len(buffer):
                if in_array:
                    raise IngestError(
                        f"{path} ends before its JSON array is closed", hint="Check the file is complete."
                    )
                return
            if in_array and buffer[position] == "]":
                return
            try:
                value, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as exc:
                more = "" if finished else text.read(JSON_CHUNK)
                if not more:
                    raise IngestError(
                        f"{path} is not valid JSON near character {exc.pos}: {exc.msg}",
                        hint="Fix the file, or store one payload per line as JSON Lines.",
                    ) from None
                buffer, position = buffer[position:] + more, 0
                continue
            yield value
            if not in_array:
                return
            buffer, position = buffer[end:], 0


def ingest_paths(
    store: Store,
    config: Config,
    system: str,
    paths: Sequence[Path],
    *,
    kind: str | None = None,
    normalise: bool = True,
    progress: Progress | None = None,
    route: str = "file",
) -> IngestSummary:
    """Store every record of the files in the inbox and normalise the new ones, batch by batch (one
    transaction each: the raw rows and their events commit together); `normalise=False` only stores."""
    if system not in SOURCE_SYSTEMS:
        raise IngestError(f"Unknown system {system!r}", hint=f"Use one of: {', '.join(SOURCE_SYSTEMS)}.")
    kinds = kinds_of(system)
    chosen = None
    if kind is not None:
        chosen = kinds.get(kind)
        if chosen is None:
            raise IngestError(
                f"{system} has no kind {kind!r}.\nKinds:\n{describe_kinds(system, config)}",
                hint="Pick one of the kinds above, or leave --kind out to detect it.",
            )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise IngestError(f"No such file: {', '.join(missing)}", hint="Check the path.")
    inbox = Inbox(store)
    summary = IngestSummary()
    now = utc_now()
    if normalise:
        summary.normalised = NormaliseSummary()
    # A batch keeps tens of thousands of records and events alive, and every young collection at
    # Python's default threshold walked them again: about an eighth of an ingest's CPU time.
    with fewer_collections():
        for path in paths:
            summary.files += 1
            batch: list[Entry] = []
            source = _Source(path, system, config, chosen, progress)
            for entry in source.records():
                summary.records += 1
                kind_name = entry[0].kind
                summary.kinds[kind_name] = summary.kinds.get(kind_name, 0) + 1
                batch.append(entry)
                if len(batch) >= (INGEST_BATCH if normalise else RECEIVE_BATCH):
                    _flush(inbox, config, system, route, path, now, batch, summary, keep_open_group=normalise)
            _flush(inbox, config, system, route, path, now, batch, summary, keep_open_group=False)
        if normalise:
            # Rows left pending by an earlier run (stored without normalising, or interrupted).
            leftover = inbox.normalise_pending(
                config, progress=(lambda n: progress("normalised", n)) if progress else None
            )
            summary.normalised.add(leftover)  # type: ignore[union-attr]
    return summary


def _flush(
    inbox: Inbox,
    config: Config,
    system: str,
    route: str,
    path: Path,
    received_at: datetime,
    batch: list[Entry],
    summary: IngestSummary,
    *,
    keep_open_group: bool,
) -> None:
    """Store the batch (and normalise it, when the summary asks for it); with `keep_open_group`, a trailing
    run of rows of one group stays in the batch for the next flush, which may bring the rest of the group."""
    if not batch:
        return
    cut = len(batch)
    if keep_open_group:
        cut = open_group_start(batch, lambda entry: group_of_record(entry[0], entry[3], config))
    chosen, rest = batch[:cut], batch[cut:]
    headers = {"file": path.name}
    if summary.normalised is None:
        stored = inbox.store_many(
            InboxItem(system, route, normaliser.kind, key, body, headers, received_at)
            for normaliser, body, key, _ in chosen
        )
    else:
        stored, normalised = inbox.store_and_normalise(
            config,
            system,
            route,
            [(normaliser.kind, key, body, record) for normaliser, body, key, record in chosen],
            headers=headers,
            received_at=received_at,
        )
        # Reading progress (bytes) covers normalising too: each batch is normalised as it is read.
        summary.normalised.add(normalised)
    summary.stored += stored
    summary.duplicates += len(chosen) - stored
    batch[:] = rest
