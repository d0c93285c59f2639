"""Playbooks: YAML runbooks validated on load, with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cogent_cli.builtins import builtin_dir
from cogent_cli.errors import UsageError

CheckOp = Literal["equals", "at_most", "at_least", "is_empty", "not_empty"]


class PlaybookError(UsageError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Model):
    """A condition on the JSON a step's command printed, e.g. `open.ops.older_than_1h` at_most 0."""

    describe: Annotated[str, Field(min_length=1)]
    # Dotted path into the command's JSON output; list indexes are numbers, `length` counts items.
    path: str = ""
    op: CheckOp
    value: Any = None
    on_fail: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _value_when_needed(self) -> Check:
        if self.op in ("equals", "at_most", "at_least") and self.value is None:
            raise ValueError(f"`{self.op}` needs a `value`")
        return self


class Step(_Model):
    title: Annotated[str, Field(min_length=1)]
    explain: Annotated[str, Field(min_length=1)]
    owner: Annotated[str, Field(min_length=1)]
    # A cogent command line without the leading `cogent`, e.g. "status --format json".
    command: str | None = None
    # Commands that change state are not re-run when exporting a handover document.
    changes_state: bool = False
    checks: list[Check] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks_need_command(self) -> Step:
        if self.checks and not self.command:
            raise ValueError("checks need a `command` whose output they examine")
        return self


class Playbook(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: Annotated[str, Field(min_length=1)]
    audience: Annotated[list[str], Field(min_length=1)]
    when: Annotated[str, Field(min_length=1)]
    steps: Annotated[list[Step], Field(min_length=1)]
    path: Path | None = Field(default=None, exclude=True)


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at a pydantic error location (nearest existing ancestor)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return (key or node).start_mark.line + 1
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


def parse_playbook(text: str, path: Path) -> Playbook:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise PlaybookError(
            f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})", hint="Fix the YAML syntax there."
        ) from None
    if not isinstance(data, dict) or root is None:
        raise PlaybookError(f"{path}:1: a playbook is a mapping with title, audience, when and steps")
    data.setdefault("name", path.stem)
    try:
        return Playbook.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{_line_of(root, loc)}: {field}: {error['msg'].removeprefix('Value error, ')}")
        raise PlaybookError(
            "\n".join(problems), hint="Fix the playbook; fields are title, audience, when and steps."
        ) from None


def load_playbooks(workspace_root: Path | None) -> dict[str, Playbook]:
    """Built-in playbooks plus the workspace's own `playbooks/` folder; names must be unique."""
    folders = [builtin_dir("playbooks")]
    if workspace_root is not None:
        folders.append(workspace_root / "playbooks")
    found: dict[str, Playbook] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            playbook = parse_playbook(path.read_text(encoding="utf-8"), path)
            if playbook.name in found:
                raise PlaybookError(
                    f"{path}: a playbook named {playbook.name!r} already exists ({found[playbook.name].path})",
                    hint="Rename one of them; names must be unique.",
                )
            found[playbook.name] = playbook
    return found


def get_playbook(workspace_root: Path | None, name: str) -> Playbook:
    playbooks = load_playbooks(workspace_root)
    if name not in playbooks:
        raise PlaybookError(
            f"No playbook named {name!r}", hint=f"Known playbooks: {', '.join(sorted(playbooks)) or 'none'}."
        )
    return playbooks[name]
