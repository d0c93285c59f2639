"""Playbooks: runbooks walked through in handover and then run by the client's teams."""

from cogent_cli.playbooks.export import export_markdown
from cogent_cli.playbooks.model import Playbook, PlaybookError, get_playbook, load_playbooks, parse_playbook
from cogent_cli.playbooks.runner import PlaybookSession, StepResult, run_non_interactive

__all__ = [
    "Playbook",
    "PlaybookError",
    "PlaybookSession",
    "StepResult",
    "export_markdown",
    "get_playbook",
    "load_playbooks",
    "parse_playbook",
    "run_non_interactive",
]
