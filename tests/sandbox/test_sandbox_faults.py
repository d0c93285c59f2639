"""Seeded fault injection: parsing, each kind, reproducible fractions, and exactly-once through unique_id."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cogent_cli.errors import UsageError
from cogent_cli.sandbox import FaultSpec, FaultSpecError, Sandbox, parse_faults, run_sandbox
from cogent_cli.sandbox.faults import FaultInjector


def test_fault_spec_parses_every_kind_seed_and_delay() -> None:
    spec = parse_faults("5xx=0.05, 429=0.02,timeout=0.01,reset=0.01,seed=7,delay=0.5")

    assert spec == FaultSpec(rates={"5xx": 0.05, "429": 0.02, "timeout": 0.01, "reset": 0.01}, seed=7, delay=0.5)
    assert str(spec) == "5xx=0.05,429=0.02,timeout=0.01,reset=0.01,seed=7,delay=0.5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5xx=0.05,boom=0.1", "Unknown fault kind 'boom'"),
        ("5xx=1.5", "must be between 0 and 1"),
        ("5xx=0.7,429=0.6", "add up to 1.3"),
        ("5xx=lots", "is not a number"),
        ("5xx", "has no value"),
        ("seed=1,seed=2", "names 'seed' twice"),
        ("timeout=0.1,delay=-1", "zero or more seconds"),
        ("seed=x", "is not a number"),
    ],
)
def test_bad_fault_spec_is_a_usage_error_saying_what_and_how(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_faults(text)

    assert message in str(caught.value)
    assert "5xx=0.05,429=0.02" in str(caught.value)  # the hint shows the right form
    assert isinstance(caught.value, UsageError)


def test_same_seed_draws_the_same_fates_and_the_configured_fraction() -> None:
    spec = parse_faults("5xx=0.1,429=0.05,timeout=0.02,reset=0.02,seed=7")

    one, two = FaultInjector(spec), FaultInjector(spec)
    fates_one = [one.draw() for _ in range(10_000)]
    fates_two = [two.draw() for _ in range(10_000)]

    assert fates_one == fates_two
    counts = {kind: sum(1 for f in fates_one if f and f.kind == kind) for kind in ("5xx", "429", "timeout", "reset")}
    assert 900 <= counts["5xx"] <= 1100
    assert 400 <= counts["429"] <= 600
    assert 130 <= counts["timeout"] <= 270
    assert 130 <= counts["reset"] <= 270
    phases = {f.phase for f in fates_one if f and f.kind in ("timeout", "reset")}
    assert phases == {"before", "after"}
    assert {f.status for f in fates_one if f and f.kind == "5xx"} == {500, 502, 503, 504}


def test_another_seed_draws_other_fates() -> None:
    one = FaultInjector(parse_faults("5xx=0.5,seed=1"))
    two = FaultInjector(parse_faults("5xx=0.5,seed=2"))

    assert [one.draw() for _ in range(50)] != [two.draw() for _ in range(50)]


def _send(sandbox: Sandbox, headers: dict[str, str], events, count: int, timeout: float = 5.0) -> list[int | str]:
    """Status (or exception name) of `count` distinct events, sent one after another."""
    outcomes: list[int | str] = []
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=timeout) as client:
        for i in range(count):
            try:
                outcomes.append(client.post("/api/events", json=events(unique_id=f"e{i}")).status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)
    return outcomes


def _settled_count(sandbox: Sandbox, expected: int) -> int:
    # A fault "after" the write may still be finishing when the client has given up.
    deadline = time.monotonic() + 10
    while sandbox.db["events"].count != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return sandbox.db["events"].count


def test_5xx_faults_are_reproducible_and_write_nothing(tmp_path: Path, headers: dict[str, str], events) -> None:
    runs = []
    for run in range(2):
        with run_sandbox(tmp_path / f"run{run}", faults="5xx=0.3,seed=7") as sandbox:
            outcomes = _send(sandbox, headers, events, 40)
            runs.append(outcomes)
            assert sandbox.db["events"].count == outcomes.count(202)

    assert runs[0] == runs[1]
    assert 6 <= sum(1 for o in runs[0] if o in (500, 502, 503, 504)) <= 20
    assert set(runs[0]) <= {202, 500, 502, 503, 504}


def test_429_fault_answers_throttled_with_retry_after(tmp_path: Path, headers: dict[str, str], events) -> None:
    with (
        run_sandbox(tmp_path / "s", faults="429=1,seed=1") as sandbox,
        httpx.Client(base_url=sandbox.base_url, headers=headers) as client,
    ):
        response = client.post("/api/events", json=events())

        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["code"] == "throttled"
        assert sandbox.db["events"].count == 0


def test_timeout_fault_holds_the_response_past_the_client_timeout(
    tmp_path: Path, headers: dict[str, str], events
) -> None:
    with run_sandbox(tmp_path / "s", faults="timeout=1,seed=3,delay=0.5") as sandbox:
        outcomes = _send(sandbox, headers, events, 10, timeout=0.1)
        after = sandbox.stats.get("fault.timeout.after", 0)

        assert outcomes == ["ReadTimeout"] * 10
        assert 0 < after < 10  # both kinds happened: applied and not applied
        assert _settled_count(sandbox, after) == after


def test_timeout_fault_answers_504_before_the_write_or_the_real_answer_after_it(
    tmp_path: Path, headers: dict[str, str], events
) -> None:
    with run_sandbox(tmp_path / "s", faults="timeout=1,seed=3,delay=0.01") as sandbox:
        outcomes = _send(sandbox, headers, events, 10)

        assert set(outcomes) == {202, 504}
        assert outcomes.count(202) == sandbox.stats["fault.timeout.after"]
        assert sandbox.db["events"].count == outcomes.count(202)


def test_reset_fault_drops_the_connection_without_a_response(tmp_path: Path, headers: dict[str, str], events) -> None:
    with run_sandbox(tmp_path / "s", faults="reset=1,seed=5") as sandbox:
        outcomes = _send(sandbox, headers, events, 10)
        after = sandbox.stats.get("fault.reset.after", 0)

        assert all(o in ("ReadError", "RemoteProtocolError") for o in outcomes)
        assert 0 < after < 10
        assert _settled_count(sandbox, after) == after


def test_retrying_through_every_fault_kind_stores_each_event_exactly_once(
    tmp_path: Path, headers: dict[str, str], events
) -> None:
    faults = "5xx=0.1,429=0.05,timeout=0.05,reset=0.05,seed=11,delay=0.3"
    with (
        run_sandbox(tmp_path / "s", faults=faults) as sandbox,
        httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=0.15) as client,
    ):
        for i in range(150):
            while True:
                try:
                    if client.post("/api/events", json=events(unique_id=f"order-{i}")).status_code == 202:
                        break
                except httpx.HTTPError:
                    pass
        applied_then_failed = sandbox.stats.get("fault.timeout.after", 0) + sandbox.stats.get("fault.reset.after", 0)

        assert applied_then_failed > 0  # some writes were sent twice...
        assert _settled_count(sandbox, 150) == 150  # ...and stored once
        assert len({row["unique_id"] for row in sandbox.db["events"].rows}) == 150
