"""SVG charts for the health report: rendered inline, with no script or stylesheet fetched from anywhere."""

from __future__ import annotations

import pygal
from pygal.style import Style

_STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#333333",
    foreground_strong="#111111",
    foreground_subtle="#bbbbbb",
    font_family="system-ui, sans-serif",
    colors=("#2463eb", "#e4572e", "#17a398", "#f3a712", "#7b2cbf", "#6c757d", "#c9184a", "#3a5a40"),
)

Series = dict[str, list[float | None]]


def _common(chart: pygal.Graph, title: str, x_labels: list[str]) -> str:
    chart.title = title
    chart.x_labels = x_labels
    # `js=[]` keeps pygal from linking its tooltip script from the web; the report must work offline.
    return chart.render(is_unicode=True)


def line_chart(title: str, x_labels: list[str], series: Series, y_title: str = "") -> str:
    chart = pygal.Line(
        js=[],
        style=_STYLE,
        width=760,
        height=320,
        y_title=y_title,
        x_label_rotation=30,
        show_minor_x_labels=True,
        disable_xml_declaration=True,
        allow_interruptions=True,
        legend_at_bottom=True,
    )
    for name, values in series.items():
        chart.add(name, values)
    return _common(chart, title, x_labels)


def stacked_bar_chart(title: str, x_labels: list[str], series: Series, y_title: str = "") -> str:
    chart = pygal.StackedBar(
        js=[],
        style=_STYLE,
        width=760,
        height=320,
        y_title=y_title,
        x_label_rotation=30,
        disable_xml_declaration=True,
        legend_at_bottom=True,
    )
    for name, values in series.items():
        chart.add(name, values)
    return _common(chart, title, x_labels)
