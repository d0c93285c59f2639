"""klaviyo-profiles: duplicate clusters with evidence, confidence and survivor; ghosts; merge proposals and apply."""

from __future__ import annotations

import asyncio
import json

import phonenumbers
import pytest
from sqlite_utils import Database

from cogent_cli.audits.merges import Proposal, apply_merges, load_proposals
from cogent_cli.audits.profiles import LARGE_BLOCK, DedupeRules, email_key_sql, mailbox, phone_key
from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus, UsageError
from tests.audits.conftest import Plant, configured, run_audit


def profiles_of(finding) -> list[str]:
    return sorted(p["id"] for p in finding.evidence["cluster"]["profiles"])


@pytest.mark.parametrize(
    ("raw", "rules", "expected"),
    [
        ("  John.Smith@GMAIL.com\t", DedupeRules(), "johnsmith@gmail.com"),
        ("john.smith+shop@gmail.com", DedupeRules(strip_plus_address=True), "johnsmith@gmail.com"),
        ("john.smith+shop@gmail.com", DedupeRules(), "johnsmith+shop@gmail.com"),
        ("j.smith@outlook.com", DedupeRules(), "j.smith@outlook.com"),
        ("j.smith@outlook.com", DedupeRules(dotless_domains=("outlook.com",)), "jsmith@outlook.com"),
        ("not-an-email", DedupeRules(), None),
        ("@example.org", DedupeRules(), None),
    ],
)
def test_email_rules_in_python_and_sql(raw, rules, expected):
    db = Database(memory=True)
    assert mailbox(raw, rules) == expected
    assert db.execute(f"select {email_key_sql(db, 'e', rules)} from (select ? as e)", [raw]).fetchone()[0] == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("07700 900123", "GB"),
        ("+44 (0)7700 900-123", "GB"),
        ("0044 7700 900123", "GB"),
        ("(020) 7946 0018", "GB"),
        ("+1 (415) 555-0100", "GB"),
        ("(415) 555-0100", "US"),
        ("1 415 555 0100", "US"),
        ("030 1234567", "DE"),
        ("06 12 34 56 78", "FR"),
    ],
)
def test_phone_keys_agree_with_phonenumbers_e164(raw, region):
    expected = phonenumbers.format_number(phonenumbers.parse(raw, region), phonenumbers.PhoneNumberFormat.E164)
    assert phone_key(DedupeRules(default_region=region))(raw) == expected


@pytest.mark.parametrize("raw", ["12", "phone", "", None, "+44 12", "+0 7700 900123", "+44 ７７００ ９００１２３"])
def test_phone_keys_refuse_what_cannot_be_a_number(raw):
    assert phone_key(DedupeRules())(raw) is None


def plant_duplicates(plant: Plant) -> None:
    plant.mirrored()
    # Email variants (case, whitespace, Gmail dots) - the survivor has the external id.
    plant.profile("E1", email="Ann.Lee@gmail.com ", first_name="Ann", last_name="Lee", created="2024-01-01T00:00:00Z")
    plant.profile("E2", email="annlee@gmail.com", external_id="C-7", created="2025-01-01T00:00:00Z")
    # One phone, three formats.
    plant.profile("T1", email="tom@a.org", phone_number="07700 900123", first_name="Tom", last_name="Kay")
    plant.profile("T2", email="tk@b.org", phone_number="+44 7700 900123", first_name="Tom", last_name="Kay")
    # External id.
    plant.profile("X1", email="x1@a.org", external_id="C-99")
    plant.profile("X2", email="x2@a.org", external_id="C-99")
    # Fuzzy: a typo in the name, same postcode written differently.
    plant.profile("F1", email="kath@a.org", first_name="Katherine", last_name="Jones", zip="M1 1AA")
    plant.profile("F2", email="kj@b.org", first_name="Katherine", last_name="Jomes", zip="m11aa")
    # Look-alikes that are not duplicates.
    plant.profile("L1", email="sam@family.org", first_name="Sam", last_name="Smith", zip="E1 6AN")
    plant.profile("L2", email="jo@family.org", first_name="Jo", last_name="Smith", zip="E1 6AN")
    plant.profile("L3", email="j.smith@outlook.com", first_name="Jim", last_name="Smith")
    plant.profile("L4", email="jsmith@outlook.com", first_name="Jim", last_name="Smith")
    plant.profile("L5", email="jim+news@example.org", first_name="Jim", last_name="Brown", zip="N1 9GU")
    plant.profile("L6", email="jim@example.org", first_name="Jim", last_name="Brown", zip="SW1 1AA")


def test_finds_each_kind_of_duplicate_and_leaves_look_alikes_apart(workspace, store, plant):
    plant_duplicates(plant)
    result = run_audit(store, workspace, "klaviyo-profiles")
    clusters = {tuple(profiles_of(f)): f for f in result.findings if f.key.startswith("profiles:")}
    assert set(clusters) == {("E1", "E2"), ("T1", "T2"), ("X1", "X2"), ("F1", "F2")}
    email = clusters[("E1", "E2")].evidence["cluster"]
    assert email["survivor"] == "E2" and email["confidence"] == 0.99
    assert email["reasons"] == ["same email: annlee@gmail.com"]
    assert clusters[("X1", "X2")].evidence["cluster"]["confidence"] == 1.0
    assert clusters[("T1", "T2")].evidence["cluster"]["reasons"] == ["same phone: +447700900123"]
    fuzzy = clusters[("F1", "F2")]
    assert 0.7 < fuzzy.evidence["cluster"]["confidence"] < 0.9 and fuzzy.severity == "info"
    assert clusters[("E1", "E2")].severity == "warning"
    assert clusters[("E1", "E2")].owner == workspace.config.owner_of("identity_conflict")


def test_plus_address_rule_comes_from_identity_settings(workspace, store, plant):
    plant_duplicates(plant)
    config = configured(workspace, identity={"strip_plus_address": True})
    result = run_audit(store, workspace, "klaviyo-profiles", config)
    clusters = {tuple(profiles_of(f)) for f in result.findings if f.key.startswith("profiles:")}
    assert ("L5", "L6") in clusters


def test_shared_phone_with_different_names_is_a_household_with_low_confidence(workspace, store, plant):
    plant.mirrored()
    plant.profile("H1", email="mum@a.org", phone_number="020 7946 0018", first_name="Mary", last_name="Hill")
    plant.profile("H2", email="son@a.org", phone_number="+442079460018", first_name="Peter", last_name="Hill")
    [finding] = run_audit(store, workspace, "klaviyo-profiles").findings
    assert finding.evidence["cluster"]["confidence"] == 0.6 and finding.severity == "info"


def test_ghosts_orders_without_profile_and_profiles_holding_someone_elses_orders(workspace, store, plant):
    plant.mirrored()
    plant.profile("P-ANN", email="ann@example.org")
    plant.profile("P-BOB", email="bob@example.org")
    lines = {"lines": [{"sku": "SKU-1", "quantity": 1}]}
    plant.fact("order.placed", lines, order="1001", email="Guest@Example.org")
    plant.fact("order.placed", lines, order="1002", email="guest@example.org ")
    plant.fact("order.placed", lines, order="1003", email="ann@example.org")
    plant.klaviyo_event("Placed Order", order="1003", profile="P-BOB", unique_id="1003")
    result = run_audit(store, workspace, "klaviyo-profiles")
    found = {f.key: f for f in result.findings}
    assert set(found) == {"no-profile:guest@example.org", "other-identity:P-BOB:ann@example.org"}
    assert found["no-profile:guest@example.org"].count == 2
    assert found["no-profile:guest@example.org"].evidence["orders"] == ["1001", "1002"]
    assert found["other-identity:P-BOB:ann@example.org"].severity == "error"


def test_clean_profiles_and_orders_find_nothing(workspace, store, plant):
    plant.mirrored()
    plant.profile(
        "P-ANN", email="ann@example.org", phone_number="07700 900001", first_name="Ann", last_name="Lee", zip="E1 6AN"
    )
    plant.profile(
        "P-BOB", email="bob@example.org", phone_number="07700 900002", first_name="Bob", last_name="Lee", zip="E1 6AN"
    )
    plant.fact("order.placed", {"lines": [{"sku": "SKU-1", "quantity": 1}]}, order="1001", email="ANN@example.org")
    plant.klaviyo_event("Placed Order", order="1001", profile="P-ANN", unique_id="1001")
    assert run_audit(store, workspace, "klaviyo-profiles").findings == []


def test_a_crowded_postcode_still_pairs_only_the_typo_twins(workspace, store, plant):
    # More profiles at one postcode than the pair-by-pair loop takes (a placeholder postcode, a block of
    # flats): the block is scored in rapidfuzz and must give the same answer.
    plant.mirrored()
    rows = [
        {"id": f"B{i:03d}", "email": f"b{i}@a.org", "first_name": first, "last_name": last, "zip": "N1 9GU"}
        for i, (first, last) in enumerate(
            (first, last)
            for last in ("Smith", "Hughes", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Thomas", "Roberts")
            for first in ("Ann", "Bob", "Cara", "Dan", "Eve", "Finn", "Gail")
        )
    ]
    store.db["klaviyo_profiles"].insert_all(rows, pk="id")
    assert len(rows) > LARGE_BLOCK
    plant.profile("TW1", email="tw1@a.org", first_name="Katherine", last_name="Robertson", zip="n1 9gu")
    plant.profile("TW2", email="tw2@b.org", first_name="Katherine", last_name="Robertsno", zip="N1 9GU")
    findings = run_audit(store, workspace, "klaviyo-profiles").findings
    assert [profiles_of(f) for f in findings] == [["TW1", "TW2"]]


def test_turning_fuzzy_matching_off_keeps_exact_matches_only(workspace, store, plant):
    plant_duplicates(plant)
    config = configured(workspace, audits={"klaviyo-profiles": {"params": {"fuzzy": False}}})
    result = run_audit(store, workspace, "klaviyo-profiles", config)
    assert {tuple(profiles_of(f)) for f in result.findings} == {("E1", "E2"), ("T1", "T2"), ("X1", "X2")}


# -- merge proposals ---------------------------------------------------------------------------


def test_export_merges_writes_proposals_with_exact_matches_pre_approved(workspace, runner, plant, tmp_path):
    plant_duplicates(plant)
    plant.store.close()
    target = tmp_path / "merges.json"
    result = runner.invoke(
        app, ["-w", str(workspace.root), "audit", "klaviyo-profiles", "-f", "json", "--export-merges", str(target)]
    )
    assert result.exit_code == 0, result.stderr
    proposals = {tuple(sorted([p.destination_id, *p.source_ids])): p for p in load_proposals(target)}
    assert proposals[("E1", "E2")].destination_id == "E2" and proposals[("E1", "E2")].source_ids == ["E1"]
    assert proposals[("E1", "E2")].approved and not proposals[("F1", "F2")].approved
    assert f"Wrote 4 merge proposal(s) to {target}" in result.stderr.replace("\n", "")


def test_a_hand_edited_proposal_file_with_an_error_is_refused_clearly(tmp_path):
    bad = tmp_path / "merges.json"
    bad.write_text(
        json.dumps(
            {
                "generated_at": "x",
                "proposals": [{"cluster": "c", "confidence": 1, "destination_id": "A", "source_ids": []}],
            }
        )
    )
    with pytest.raises(UsageError, match=r"proposals\.0\.source_ids: List should have at least 1 item"):
        load_proposals(bad)


class RecordingClient:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or set()

    async def merge_profiles(self, destination_id: str, source_id: str) -> str:
        from cogent_cli.klaviyo.errors import KlaviyoError

        if source_id in self.fail:
            raise KlaviyoError("Profile not found", status=404)
        self.calls.append((destination_id, source_id))
        return destination_id


PROPOSALS = [
    Proposal(cluster="c1", approved=True, confidence=0.99, destination_id="A", source_ids=["B", "C"]),
    Proposal(cluster="c2", approved=False, confidence=0.8, destination_id="D", source_ids=["E"]),
    Proposal(cluster="c3", approved=True, confidence=1.0, destination_id="F", source_ids=["G"]),
]


def test_apply_merges_only_approved_asks_per_batch_and_skips_what_is_done(store):
    client, asked = RecordingClient(), []
    summary = asyncio.run(
        apply_merges(
            store, client, PROPOSALS, dry_run=False, confirm=lambda b: asked.append(len(b)) or True, batch_size=2
        )
    )
    assert client.calls == [("A", "B"), ("A", "C"), ("F", "G")] and asked == [2, 1]
    assert (summary.merged, summary.failed, summary.already_done) == (3, 0, 0)
    again = asyncio.run(apply_merges(store, RecordingClient(), PROPOSALS, dry_run=False, confirm=lambda b: True))
    assert (again.merged, again.already_done) == (0, 3)


def test_a_declined_batch_merges_nothing_and_a_failed_merge_is_recorded(store):
    declined = asyncio.run(apply_merges(store, RecordingClient(), PROPOSALS, dry_run=False, confirm=lambda b: False))
    assert (declined.merged, declined.skipped_batches) == (0, 1)
    client = RecordingClient(fail={"C"})
    summary = asyncio.run(apply_merges(store, client, PROPOSALS, dry_run=False, confirm=lambda b: True))
    assert (summary.merged, summary.failed) == (2, 1)
    rows = {r["source_id"]: (r["status"], r["error"]) for r in store.db["profile_merges"].rows}
    assert rows["C"][0] == "failed" and "Profile not found" in rows["C"][1] and rows["B"] == ("merged", None)


def test_dry_run_records_and_sends_nothing(store):
    summary = asyncio.run(apply_merges(store, None, PROPOSALS, dry_run=True, confirm=lambda b: True))
    assert summary.planned == 3 and summary.merged == 0
    assert {r["status"] for r in store.db["profile_merges"].rows} == {"dry-run"}


def test_merge_apply_missing_file_is_a_usage_error(workspace, runner, tmp_path):
    result = runner.invoke(app, ["-w", str(workspace.root), "merge", "apply", str(tmp_path / "none.json")])
    assert result.exit_code == ExitStatus.USAGE and "No merge proposal file" in result.stderr
