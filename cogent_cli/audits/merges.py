"""Profile merge proposals: written by the klaviyo-profiles audit, reviewed by a person, applied in batches.

Klaviyo's merge API takes one source profile per call and deletes it, so every call is recorded in
the state file before the next one, and a re-run skips merges already done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cogent_cli.audits.model import Finding
from cogent_cli.errors import CogentError, ExitStatus, UsageError
from cogent_cli.state import Store

log = logging.getLogger(__name__)
# Exact identifier matches are safe to approve up front; fuzzy ones wait for a person.
AUTO_APPROVE_CONFIDENCE = 0.99
BATCH_SIZE = 25


class Proposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: str
    approved: bool = False
    confidence: float
    destination_id: str
    source_ids: list[str] = Field(min_length=1)
    reasons: list[str] = Field(default_factory=list)
    profiles: list[dict[str, Any]] = Field(default_factory=list)


class ProposalFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generated_at: str
    note: str = ""
    proposals: list[Proposal]


def proposals_from(findings: Sequence[Finding]) -> list[Proposal]:
    proposals = []
    for finding in findings:
        cluster = finding.evidence.get("cluster")
        if not cluster:
            continue
        survivor = cluster["survivor"]
        confidence = float(cluster["confidence"])
        proposals.append(
            Proposal(
                cluster=finding.key,
                approved=confidence >= AUTO_APPROVE_CONFIDENCE,
                confidence=confidence,
                destination_id=survivor,
                source_ids=[p["id"] for p in cluster["profiles"] if p["id"] != survivor],
                reasons=cluster["reasons"],
                profiles=cluster["profiles"],
            )
        )
    return proposals


def export_merges(findings: Sequence[Finding], path: Path) -> int:
    proposals = proposals_from(findings)
    document = ProposalFile(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        note=(
            f"Proposals with confidence >= {AUTO_APPROVE_CONFIDENCE} are pre-approved; set `approved` to true or false "
            "for each one you have reviewed, then run `cogent merge apply FILE --dry-run` and without --dry-run."
        ),
        proposals=proposals,
    )
    path.write_text(document.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return len(proposals)


def load_proposals(path: Path) -> list[Proposal]:
    try:
        return ProposalFile.model_validate_json(path.read_text(encoding="utf-8")).proposals
    except FileNotFoundError:
        raise UsageError(
            f"No merge proposal file at {path}",
            hint="Write one with `cogent audit klaviyo-profiles --export-merges FILE`.",
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(
            f"{path} is not a merge proposal file: {where}: {first['msg']}",
            hint="Export a fresh one with `cogent audit klaviyo-profiles --export-merges FILE` and edit only `approved`.",
        ) from None


class MergeClient(Protocol):
    async def merge_profiles(self, destination_id: str, source_id: str) -> Any: ...


@dataclass(frozen=True)
class MergeStep:
    cluster: str
    destination_id: str
    source_id: str


@dataclass
class MergeSummary:
    merged: int = 0
    already_done: int = 0
    failed: int = 0
    skipped_batches: int = 0
    planned: int = 0


def plan(store: Store, proposals: Sequence[Proposal]) -> tuple[list[MergeStep], int]:
    """The merges still to do for approved proposals, and how many were already done before."""
    done = {
        (row["destination_id"], row["source_id"])
        for row in store.db.query("select destination_id, source_id from profile_merges where status = 'merged'")
    }
    steps, already = [], 0
    for proposal in proposals:
        if not proposal.approved:
            continue
        for source_id in proposal.source_ids:
            if (proposal.destination_id, source_id) in done:
                already += 1
            else:
                steps.append(MergeStep(proposal.cluster, proposal.destination_id, source_id))
    return steps, already


def batches(steps: list[MergeStep], size: int = BATCH_SIZE) -> Iterator[list[MergeStep]]:
    for start in range(0, len(steps), size):
        yield steps[start : start + size]


def _record(store: Store, batch: str, step: MergeStep, status: str, error: str | None = None) -> None:
    with store.transaction() as db:
        db["profile_merges"].insert(
            {
                "batch": batch,
                "cluster": step.cluster,
                "destination_id": step.destination_id,
                "source_id": step.source_id,
                "status": status,
                "error": error,
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )


async def apply_merges(
    store: Store,
    client: MergeClient | None,
    proposals: Sequence[Proposal],
    *,
    dry_run: bool,
    confirm: Callable[[list[MergeStep]], bool],
    batch_size: int = BATCH_SIZE,
) -> MergeSummary:
    """Merge each approved proposal's source profiles into its survivor, one confirmed batch at a time."""
    steps, already = plan(store, proposals)
    summary = MergeSummary(already_done=already, planned=len(steps))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for number, batch in enumerate(batches(steps, batch_size), start=1):
        name = f"{stamp}-{number}"
        if not confirm(batch):
            summary.skipped_batches += 1
            continue
        for step in batch:
            if dry_run:
                _record(store, name, step, "dry-run")
                continue
            assert client is not None
            try:
                await client.merge_profiles(step.destination_id, step.source_id)
            except CogentError as exc:
                log.warning("merge %s -> %s failed: %s", step.source_id, step.destination_id, exc.message)
                _record(store, name, step, "failed", exc.message)
                summary.failed += 1
                # A rejected merge is recorded and the batch goes on; lost access or reachability stops the run.
                if exc.exit_status != ExitStatus.ERROR:
                    raise
                continue
            _record(store, name, step, "merged")
            summary.merged += 1
    return summary


def proposals_summary(proposals: Sequence[Proposal]) -> dict[str, int]:
    return {
        "proposals": len(proposals),
        "approved": sum(p.approved for p in proposals),
        "source_profiles": sum(len(p.source_ids) for p in proposals if p.approved),
    }
