"""A playbook as a Markdown handover document, filled with this workspace's real figures."""

from __future__ import annotations

from datetime import UTC, datetime

from cogent_cli.playbooks.model import Playbook
from cogent_cli.playbooks.runner import execute_step
from cogent_cli.workspace import Workspace


def export_markdown(workspace: Workspace, playbook: Playbook) -> str:
    """Read-only steps are run now, so each check shows today's value beside what it expects."""
    lines = [
        f"# {playbook.title}",
        "",
        f"*Workspace:* {workspace.config.workspace.name} · *For:* {', '.join(playbook.audience)} · "
        f"*Generated:* {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"**When to run it:** {playbook.when}",
        "",
        f"Run it yourself with `cogent playbook run {playbook.name}`.",
        "",
    ]
    for index, step in enumerate(playbook.steps):
        lines += [f"## {index + 1}. {step.title}", "", f"*Owner:* {step.owner}", "", step.explain, ""]
        if step.command:
            lines += ["```bash", f"cogent {step.command}", "```", ""]
        if not step.checks:
            continue
        if step.changes_state:
            lines += ["| Check | If it fails |", "|---|---|"]
            lines += [f"| {c.describe} | {c.on_fail} |" for c in step.checks]
        else:
            result = execute_step(workspace, index, step)
            lines += ["| Check | Today | If it fails |", "|---|---|---|"]
            for check in result.checks:
                mark = "✅" if check.passed else "❌"
                lines.append(f"| {check.check.describe} | {mark} {check.detail} | {check.check.on_fail} |")
        lines.append("")
    return "\n".join(lines)
