"""The Scend drop folder: exports stored in the inbox first, moved to processed/ only afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cogent_cli.errors import UsageError
from cogent_cli.pull import pull
from cogent_cli.workspace import Workspace


@pytest.fixture
def drop(workspace: Workspace, seeded, tmp_path: Path) -> tuple[Workspace, Path]:
    folder = tmp_path / "drop"
    shutil.copytree(seeded.drop_dir, folder, ignore=shutil.ignore_patterns("processed"))
    with workspace.config_path.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[sources.scend]\ndrop_dir = "{folder}"\n')
    return Workspace(workspace.root), folder


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_every_export_is_stored_then_moved_to_processed(drop):
    ws, folder = drop
    exports = names(folder)
    result = pull(ws, "scend")
    assert result.processed_files == exports
    assert names(folder) == []
    assert names(folder / "processed") == exports
    with ws.store() as store:
        stored = store.db.execute("select count(*) from inbox where system = 'scend' and route = 'pull'").fetchone()[0]
    assert stored == result.stored > 0
    assert result.normalised is not None and result.normalised.quarantined == 1  # the planted short row


def test_a_crash_before_the_move_leaves_the_file_and_the_rerun_finds_duplicates(drop, monkeypatch):
    import cogent_cli.connectors.scend as scend

    ws, folder = drop
    failing = next(name for name in names(folder) if name.startswith("stock_"))
    real = scend.ingest_paths

    def crash_after_storing_stock(store, config, system, paths, **kwargs):
        summary = real(store, config, system, paths, **kwargs)
        if paths[0].name == failing:
            raise OSError("killed before the move")
        return summary

    monkeypatch.setattr(scend, "ingest_paths", crash_after_storing_stock)
    with pytest.raises(OSError):
        pull(ws, "scend")
    assert failing in names(folder)
    assert failing not in names(folder / "processed")
    monkeypatch.setattr(scend, "ingest_paths", real)
    resumed = pull(ws, "scend")
    assert resumed.processed_files == [failing]
    assert resumed.stored == 0 and resumed.duplicates > 0
    assert names(folder) == []


def test_the_same_export_dropped_twice_is_stored_once(drop):
    ws, folder = drop
    first = pull(ws, "scend")
    for path in (folder / "processed").iterdir():
        shutil.copy(path, folder / path.name)
    again = pull(ws, "scend")
    assert again.stored == 0
    assert again.duplicates == first.stored + first.duplicates
    assert len(names(folder / "processed")) == 2 * len(first.processed_files)


def test_unknown_files_stay_put_and_are_reported_without_blocking_the_rest(drop):
    ws, folder = drop
    (folder / "README.txt").write_text("drop folder\n")
    (folder / "aaa_unknown.csv").write_text("colour,flavour\nred,sweet\n")
    result = pull(ws, "scend")
    assert "README.txt" in result.skipped_files
    assert "Cannot tell which kind" in result.skipped_files["aaa_unknown.csv"]
    assert names(folder) == ["README.txt", "aaa_unknown.csv"]
    assert len(result.processed_files) == 4


def test_a_missing_drop_folder_says_how_to_fix_it(workspace):
    with workspace.config_path.open("a", encoding="utf-8") as handle:
        handle.write('\n[sources.scend]\ndrop_dir = "nowhere/exports"\n')
    with pytest.raises(UsageError, match=r"drop_dir under \[sources\.scend\]"):
        pull(Workspace(workspace.root), "scend")
