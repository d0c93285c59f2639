"""`cogent report`: a self-contained HTML health report (inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

from datetime import date, datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from cogent_cli.config import Config
from cogent_cli.report.charts import line_chart, stacked_bar_chart
from cogent_cli.report.data import ReportData, collect_report
from cogent_cli.state import Store

__all__ = ["ReportData", "collect_report", "render_report"]

_env = Environment(loader=PackageLoader("cogent_cli", "templates"), autoescape=select_autoescape(["j2", "html"]))


def _label(days: list[str]) -> list[str]:
    return [day[5:] for day in days]


def render_html(report: ReportData) -> str:
    charts = {
        "volume": stacked_bar_chart("Events per day", _label(report.volume.days), report.volume.series, "events"),
        "latency": line_chart("Latency percentiles", _label(report.latency.days), report.latency.series, "minutes"),
        "opened": stacked_bar_chart(
            "Exceptions opened", _label(report.exceptions_opened.days), report.exceptions_opened.series
        ),
        "resolved": stacked_bar_chart(
            "Exceptions resolved", _label(report.exceptions_resolved.days), report.exceptions_resolved.series
        ),
    }
    return _env.get_template("report.html.j2").render(r=report, charts=charts)


def render_report(store: Store, config: Config, since: date | None = None, now: datetime | None = None) -> str:
    return render_html(collect_report(store, config, since, now))
