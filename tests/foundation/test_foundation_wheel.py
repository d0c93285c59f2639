"""The wheel carries the built-in audits and playbooks, and an installed cogent finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_builtin_audits_and_playbooks_and_an_installed_cogent_finds_them(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("cogent_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        site = tmp_path / "site-packages"
        archive.extractall(site)

    for kind in ("audits", "playbooks"):
        assert f"cogent_cli/_builtin/{kind}/README.md" in names
        shipped = sorted(n for n in names if n.startswith(f"cogent_cli/_builtin/{kind}/"))
        in_checkout = sorted(
            f"cogent_cli/_builtin/{kind}/{p.relative_to(ROOT / kind).as_posix()}"
            for p in (ROOT / kind).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        assert shipped == in_checkout
    assert "cogent_cli/templates/cogent.toml" in names
    assert not any(n.startswith(("audits/", "playbooks/", "tests/")) for n in names)

    # The extracted wheel is exactly an installed layout; run from elsewhere so the checkout is not on the path.
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cogent_cli.builtins import builtin_dir; print(builtin_dir('audits')); print(builtin_dir('playbooks'))",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert found == [
        str(site / "cogent_cli" / "_builtin" / "audits"),
        str(site / "cogent_cli" / "_builtin" / "playbooks"),
    ]
    assert (Path(found[0]) / "README.md").is_file()


def test_in_a_checkout_the_top_level_folders_are_the_builtins():
    from cogent_cli.builtins import builtin_dir

    assert builtin_dir("audits") == ROOT / "audits"
    assert builtin_dir("playbooks") == ROOT / "playbooks"
