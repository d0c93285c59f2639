"""Scend: a drop folder of exports (`[sources.scend] drop_dir`), since Scend publishes no API.

Files are taken in name order (export names carry a timestamp). Each is read the way `cogent ingest`
reads it (CSV row by row, JSON / JSON Lines record by record, kind detected from the header or
fields) and moves to `processed/` only once every record is in the inbox; a crash mid-file leaves it
in place, and re-reading it meets only duplicates. A file whose kind cannot be told stays where it is
and is reported, without holding up the files after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cogent_cli.config import Config
from cogent_cli.errors import UsageError
from cogent_cli.ingest import IngestError, IngestSummary, ingest_paths
from cogent_cli.state import Store

PROCESSED = "processed"
SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class FileOutcome:
    name: str
    summary: IngestSummary | None
    # Why the file was left in the drop folder (None when it moved to processed/).
    problem: str | None = None
    moved_to: Path | None = None


def unique_destination(folder: Path, name: str) -> Path:
    destination = folder / name
    counter = 1
    while destination.exists():
        destination = folder / f"{Path(name).stem}.{counter}{Path(name).suffix}"
        counter += 1
    return destination


class DropFolder:
    system = "scend"

    def __init__(self, config: Config, root: Path | None = None) -> None:
        settings = config.sources.scend
        if settings is None or settings.drop_dir is None:
            raise UsageError(
                "Scend is not configured",
                hint='Add [sources.scend] with drop_dir = "/path/to/exports" to cogent.toml.',
            )
        drop = settings.drop_dir.expanduser()
        # A relative drop folder is relative to the workspace folder.
        self.path = drop if drop.is_absolute() else (root or Path.cwd()) / drop
        if not self.path.is_dir():
            raise UsageError(
                f"Scend drop folder {self.path} does not exist",
                hint="Create it, or fix drop_dir under [sources.scend].",
            )
        self.config = config

    def waiting(self) -> tuple[list[Path], list[str]]:
        """(export files to read in name order, names of other files that are left alone)."""
        files: list[Path] = []
        ignored: list[str] = []
        for path in sorted(self.path.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in SUFFIXES:
                files.append(path)
            else:
                ignored.append(path.name)
        return files, ignored

    def collect(self, store: Store) -> Iterator[FileOutcome]:
        """Store each waiting file's records in the inbox, then move it to processed/."""
        files, _ = self.waiting()
        for path in files:
            try:
                summary = ingest_paths(store, self.config, self.system, [path], normalise=False, route="pull")
            except IngestError as exc:
                yield FileOutcome(path.name, None, problem=exc.message)
                continue
            yield FileOutcome(path.name, summary, moved_to=self.processed(path))

    def processed(self, path: Path) -> Path:
        folder = self.path / PROCESSED
        folder.mkdir(exist_ok=True)
        return path.rename(unique_destination(folder, path.name))
