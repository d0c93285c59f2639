"""Where the built-in audits and playbooks live: inside the wheel, or at the top of a checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

PACKAGE_DIR = Path(__file__).resolve().parent


def builtin_dir(kind: Literal["audits", "playbooks"]) -> Path:
    installed = PACKAGE_DIR / "_builtin" / kind
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / kind
