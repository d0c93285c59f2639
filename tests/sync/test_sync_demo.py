"""`cogent demo` end to end: seeded sources pulled, normalised and synced into a sandbox it starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from cogent_cli.cli import app


def test_demo_pulls_syncs_and_reports_what_klaviyo_received_and_why_exceptions_were_raised(
    tmp_path: Path, runner: CliRunner
) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--orders", "6", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["events"] > 0 and report["sync"]["status"] == "ok"
    assert report["klaviyo_received"].get("Fulfilled Shipment", 0) >= 1
    assert report["sync"]["sent"] == sum(report["sync"]["sent_by_metric"].values())
    # The two SKUs left out of the demo catalog surface as unknown_sku exceptions owned by ecommerce.
    assert report["exceptions"]["unknown_sku (owner: ecommerce)"]["count"] >= 1
    assert (tmp_path / "demo" / "cogent.toml").is_file()
    assert "COGENT_KLAVIYO_API_KEY" not in os.environ
