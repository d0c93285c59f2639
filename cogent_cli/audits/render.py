"""Audit results as documents: JSON and CSV carry every field; Markdown and HTML are for handover."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

from cogent_cli.audits.model import SEVERITIES, Finding
from cogent_cli.audits.runner import AuditResult

DocumentFormat = Literal["json", "csv", "md", "html"]
CSV_FIELDS = (
    "audit",
    "state",
    "severity",
    "owner",
    "title",
    "count",
    "order_number",
    "sku",
    "profile_id",
    "email",
    "key",
    "fix",
    "first_seen",
    "evidence",
)


def summary(results: list[AuditResult]) -> dict[str, Any]:
    """Counts of current findings by severity and by owner (with severity), plus new/fixed totals."""
    current = [f for r in results for f in r.findings]
    by_owner: dict[str, Counter[str]] = {}
    for finding in current:
        by_owner.setdefault(finding.owner, Counter())[finding.severity] += 1
    return {
        "by_severity": {s: sum(f.severity == s for f in current) for s in SEVERITIES},
        "by_owner": {owner: {s: counts[s] for s in SEVERITIES} for owner, counts in sorted(by_owner.items())},
        "new": sum(f.state == "new" for f in current),
        "persisting": sum(f.state == "persisting" for f in current),
        "fixed": sum(len(r.fixed) for r in results),
        "failed_audits": [r.audit.name for r in results if not r.ok],
    }


def as_dict(results: list[AuditResult], workspace: str) -> dict[str, Any]:
    return {
        "workspace": workspace,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": summary(results),
        "audits": [
            {
                "name": r.audit.name,
                "description": r.audit.description,
                "run_id": r.run_id,
                "started_at": r.started_at,
                "status": "ok" if r.ok else "failed",
                "error": r.error,
                "counts": r.counts(),
                "findings": [f.to_dict() for f in r.findings],
                "fixed": [f.to_dict() for f in r.fixed],
            }
            for r in results
        ],
    }


def to_json(results: list[AuditResult], workspace: str) -> str:
    return json.dumps(as_dict(results, workspace), indent=2, default=str, ensure_ascii=False) + "\n"


def to_csv(results: list[AuditResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        for finding in (*result.findings, *result.fixed):
            row = finding.to_dict()
            row["evidence"] = json.dumps(finding.evidence, default=str, ensure_ascii=False, sort_keys=True)
            writer.writerow({name: row[name] for name in CSV_FIELDS})
    return buffer.getvalue()


def business_keys(finding: Finding) -> str:
    parts = [
        f"{label} {value}"
        for label, value in (
            ("order", finding.order_number),
            ("SKU", finding.sku),
            ("profile", finding.profile_id),
            ("email", finding.email),
        )
        if value
    ]
    return ", ".join(parts)


def _md_cell(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def to_markdown(results: list[AuditResult], workspace: str) -> str:
    totals = summary(results)
    lines = [
        f"# Audit report: {workspace}",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"{totals['new']} new, {totals['persisting']} persisting, {totals['fixed']} fixed since the previous run.",
        "",
        "## Summary",
        "",
        "| Owner | Errors | Warnings | Info |",
        "|---|---:|---:|---:|",
    ]
    for owner, counts in totals["by_owner"].items():
        lines.append(f"| {_md_cell(owner)} | {counts['error']} | {counts['warning']} | {counts['info']} |")
    bs = totals["by_severity"]
    lines.append(f"| **All** | **{bs['error']}** | **{bs['warning']}** | **{bs['info']}** |")
    for result in results:
        lines += ["", f"## {result.audit.name}", "", result.audit.description, ""]
        if not result.ok:
            lines += [f"**The audit failed:** {_md_cell(result.error)}", ""]
            continue
        if not result.findings:
            lines.append("No findings.")
        for finding in result.findings:
            lines += [
                f"### [{finding.severity.upper()}] {_md_cell(finding.title)}",
                "",
                f"- State: {finding.state} (first seen {finding.first_seen}); owner: **{finding.owner}**; affects {finding.count}",
            ]
            if keys := business_keys(finding):
                lines.append(f"- Keys: {keys}")
            for name, value in finding.evidence.items():
                lines.append(f"- {name}: `{json.dumps(value, default=str, ensure_ascii=False)}`")
            if finding.fix:
                lines.append(f"- **How to fix:** {finding.fix}")
            lines.append("")
        if result.fixed:
            lines += ["", "Fixed since the previous run:", ""]
            lines += [f"- ~~{_md_cell(f.title)}~~" for f in result.fixed]
    return "\n".join(lines).rstrip() + "\n"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:70rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d5d9e0;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border:1px solid #d5d9e0;padding:.35rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f5f8}.num{text-align:right}
.sev{font-weight:600;border-radius:3px;padding:0 .4rem}.error{background:#fde2e1;color:#a1120a}
.warning{background:#fff1cc;color:#7a5200}.info{background:#e4eefc;color:#1b4d99}.state{color:#5b6475;font-size:.8rem}
pre{white-space:pre-wrap;margin:0;font-size:.8rem}.failed{color:#a1120a;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def to_html(results: list[AuditResult], workspace: str) -> str:
    totals = summary(results)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Audit report: {_e(workspace)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Audit report: {_e(workspace)}</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {totals['new']} new, {totals['persisting']} persisting, "
        f"{totals['fixed']} fixed since the previous run.</p>",
        "<h2>Summary</h2><table><tr><th>Owner</th><th>Errors</th><th>Warnings</th><th>Info</th></tr>",
    ]
    for owner, counts in totals["by_owner"].items():
        parts.append(
            f"<tr><td>{_e(owner)}</td><td class=num>{counts['error']}</td><td class=num>{counts['warning']}</td>"
            f"<td class=num>{counts['info']}</td></tr>"
        )
    parts.append("</table>")
    for result in results:
        parts.append(
            f'<h2 id="{_e(result.audit.name)}">{_e(result.audit.name)}</h2><p>{_e(result.audit.description)}</p>'
        )
        if not result.ok:
            parts.append(f"<p class=failed>The audit failed: {_e(result.error)}</p>")
            continue
        if not result.findings:
            parts.append("<p>No findings.</p>")
            continue
        parts.append(
            "<table><tr><th>Severity</th><th>Finding</th><th>Keys</th><th>Affects</th><th>Owner</th>"
            "<th>Evidence</th><th>How to fix</th></tr>"
        )
        for f in result.findings:
            evidence = json.dumps(f.evidence, indent=1, default=str, ensure_ascii=False)
            parts.append(
                f"<tr><td><span class='sev {f.severity}'>{f.severity}</span><br><span class=state>{f.state}</span></td>"
                f"<td>{_e(f.title)}</td><td>{_e(business_keys(f))}</td><td class=num>{f.count}</td><td>{_e(f.owner)}</td>"
                f"<td><pre>{_e(evidence)}</pre></td><td>{_e(f.fix)}</td></tr>"
            )
        parts.append("</table>")
        if result.fixed:
            parts.append("<p>Fixed since the previous run:</p><ul>")
            parts += [f"<li><s>{_e(f.title)}</s></li>" for f in result.fixed]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(results: list[AuditResult], fmt: DocumentFormat, workspace: str) -> str:
    if fmt == "json":
        return to_json(results, workspace)
    if fmt == "csv":
        return to_csv(results)
    if fmt == "md":
        return to_markdown(results, workspace)
    return to_html(results, workspace)
