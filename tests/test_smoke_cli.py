from typer.testing import CliRunner

from cogent_cli.cli import app


def test_init_then_doctor_reports_missing_klaviyo_key(runner: CliRunner, tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "acme")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--workspace", str(tmp_path / "acme"), "doctor"])
    assert result.exit_code == 1
    assert "FAIL  klaviyo credentials: No klaviyo api_key found" in result.stdout
