"""Benchmark of duplicate-profile detection (the klaviyo-profiles audit) on synthetic profiles.

Plants duplicate clusters of known kinds (email variants, phone formats, fuzzy names at the same
postcode, shared external ids) and look-alikes that are not duplicates (family members at one address,
dots in a non-Gmail address, namesakes elsewhere) into the Klaviyo mirror of a fresh workspace's state
file. It then times the `klaviyo-profiles` audit as `cogent audit` runs it (open the state file, read
the mirror, search, grade, store the findings) in a fresh process, and prints run time, peak memory and
pairwise precision/recall against the planted truth; and, when splink is installed (`pip install -e .[bench]`),
the same figures for splink with its DuckDB backend on the same data.

Usage: python bench/audit_profiles.py [--profiles 1000000] [--clusters 20000] [--splink-profiles N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sqlite3
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

from sqlite_utils import Database

from cogent_cli.audits import AuditRunner, load_registry
from cogent_cli.audits.profiles import PROFILE_COLUMNS
from cogent_cli.workspace import Workspace, init_workspace

FIRST = [
    "james",
    "john",
    "robert",
    "michael",
    "william",
    "david",
    "richard",
    "joseph",
    "thomas",
    "charles",
    "christopher",
    "daniel",
    "matthew",
    "anthony",
    "mark",
    "donald",
    "steven",
    "paul",
    "andrew",
    "joshua",
    "kenneth",
    "kevin",
    "brian",
    "george",
    "timothy",
    "ronald",
    "edward",
    "jason",
    "jeffrey",
    "ryan",
    "jacob",
    "gary",
    "nicholas",
    "eric",
    "jonathan",
    "stephen",
    "larry",
    "justin",
    "scott",
    "brandon",
    "benjamin",
    "samuel",
    "gregory",
    "alexander",
    "patrick",
    "frank",
    "raymond",
    "jack",
    "dennis",
    "jerry",
    "tyler",
    "aaron",
    "henry",
    "douglas",
    "peter",
    "adam",
    "nathan",
    "zachary",
    "walter",
    "kyle",
    "harold",
    "carl",
    "jeremy",
    "mary",
    "patricia",
    "jennifer",
    "linda",
    "elizabeth",
    "barbara",
    "susan",
    "jessica",
    "sarah",
    "karen",
    "lisa",
    "nancy",
    "betty",
    "margaret",
    "sandra",
    "ashley",
    "kimberly",
    "emily",
    "donna",
    "michelle",
    "carol",
    "amanda",
    "melissa",
    "deborah",
    "stephanie",
    "rebecca",
    "sharon",
    "laura",
    "cynthia",
    "kathleen",
    "amy",
    "angela",
    "shirley",
    "anna",
    "brenda",
    "pamela",
    "emma",
    "nicole",
    "helen",
    "samantha",
    "katherine",
    "christine",
    "debra",
    "rachel",
    "carolyn",
    "janet",
    "catherine",
    "maria",
    "heather",
    "diane",
    "ruth",
    "julie",
    "olivia",
    "joyce",
    "virginia",
    "victoria",
    "kelly",
    "lauren",
    "christina",
    "joan",
    "evelyn",
    "judith",
    "megan",
    "andrea",
    "cheryl",
    "hannah",
    "jacqueline",
    "martha",
    "gloria",
    "teresa",
    "ann",
    "sara",
    "madison",
    "frances",
    "kathryn",
    "janice",
    "jean",
    "abigail",
    "alice",
    "judy",
    "sophia",
    "grace",
    "denise",
    "amber",
    "doris",
    "marilyn",
    "danielle",
    "beverly",
    "isabella",
    "theresa",
    "diana",
]
SYLLABLES = [
    "ash",
    "ber",
    "by",
    "car",
    "dal",
    "den",
    "ell",
    "field",
    "ford",
    "gar",
    "ham",
    "hill",
    "ing",
    "ker",
    "lan",
    "ley",
    "ling",
    "man",
    "mer",
    "mor",
    "nel",
    "ton",
    "par",
    "ridge",
    "ros",
    "sey",
    "son",
    "stone",
    "tay",
    "ward",
    "well",
    "wick",
    "win",
    "wood",
]
DOMAINS = ("gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.co.uk", "icloud.com", "btinternet.com")
COLUMNS = PROFILE_COLUMNS
# What `cogent pull klaviyo` stores besides the identifiers, so rows are as wide as a real mirror's.
PROPERTIES = '{"source": "bench", "loyalty_tier": "silver"}'
SUBSCRIPTIONS = '{"email": {"marketing": {"consent": "SUBSCRIBED", "can_receive_email_marketing": true}}}'
MIRRORED_AT = "2026-11-23T00:00:00Z"


def last_names(rng: random.Random, count: int = 3000) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3)))))
    return sorted(names)


def postcode(rng: random.Random) -> str:
    area = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((1, 2))))
    return f"{area}{rng.randint(1, 99)} {rng.randint(1, 9)}{rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}"


def typo(rng: random.Random, word: str) -> str:
    """One realistic keyboard slip, away from the first two letters."""
    if len(word) < 5:
        return word + rng.choice("aeiouy")
    i = rng.randint(2, len(word) - 2)
    kind = rng.choice(("swap", "drop", "replace", "double"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(string.ascii_lowercase.replace(word[i], "")) + word[i + 1 :]


def phone_variant(rng: random.Random, national: str) -> str:
    digits = national[1:]
    return rng.choice(
        (
            f"+44 {digits[:4]} {digits[4:]}",
            f"0044 {digits}",
            f"+44 (0){digits[:4]} {digits[4:]}",
            f"({national[:5]}) {national[5:8]}-{national[8:]}",
            f"+44{digits}",
        )
    )


def email_variant(rng: random.Random, email: str) -> str:
    local, domain = email.split("@")
    options = [email.upper(), f"  {email} ", f"{local}+shop@{domain}", local.capitalize() + "@" + domain.upper()]
    if domain == "gmail.com":
        options.append(local.replace(".", "") + "@gmail.com")
    return rng.choice(options)


def generate(ws: Workspace, profiles: int, clusters: int, seed: int = 7) -> list[list[str]]:
    """Write `profiles` rows to the Klaviyo mirror of the workspace; returns the planted duplicate
    clusters (profile ids)."""
    rng = random.Random(seed)
    lasts = last_names(rng)
    zips = [postcode(rng) for _ in range(max(profiles // 3, 1))]
    truth: list[list[str]] = []
    counter = iter(range(10**9))

    def person(n: int) -> dict[str, str | None]:
        first, last = rng.choice(FIRST), rng.choice(lasts)
        domain = rng.choice(DOMAINS)
        return {
            "email": f"{first}.{last}{n}@{domain}",
            "phone_number": f"07{700000000 + n}" if rng.random() < 0.6 else None,
            "external_id": None,
            "first_name": first.capitalize(),
            "last_name": last.capitalize(),
            "zip": rng.choice(zips),
            "address1": f"{rng.randint(1, 200)} {rng.choice(lasts).capitalize()} Road",
            "created": f"20{rng.randint(15, 25)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T00:00:00Z",
        }

    def rows() -> Iterator[tuple]:
        emitted = planted = look_alikes = 0
        while emitted < profiles:
            n = next(counter)
            base = person(n)
            base_id = f"P{n:07d}"
            kind = rng.choice(("dup", "look", "plain")) if rng.random() < 3.6 * clusters / profiles else "plain"
            if kind == "dup" and planted < clusters and profiles - emitted > 3:
                variant = planted % 4
                planted += 1
                if variant == 1 and not base["phone_number"]:
                    base["phone_number"] = f"07{700000000 + n}"
                if variant == 3:
                    base["external_id"] = f"C{n}"
                ids = [base_id]
                batch = [(base_id, *(base.get(c) for c in COLUMNS[1:]))]
                for _ in range(1 if rng.random() < 0.8 else 2):
                    dup = next(counter)
                    twin = dict(base, email=f"other{dup}@example.net", phone_number=None)
                    if variant == 0:
                        twin["email"] = email_variant(rng, base["email"])
                    elif variant == 1:
                        twin["phone_number"] = phone_variant(rng, base["phone_number"])
                    elif variant == 2:
                        twin["external_id"] = None
                        if rng.random() < 0.5:
                            twin["last_name"] = typo(rng, base["last_name"].lower()).capitalize()
                        else:
                            twin["first_name"] = typo(rng, base["first_name"].lower()).capitalize()
                        twin["zip"] = base["zip"].replace(" ", "").lower()
                    ids.append(f"P{dup:07d}")
                    batch.append((ids[-1], *(twin.get(c) for c in COLUMNS[1:])))
                truth.append(ids)
                emitted += len(batch)
                yield from batch
                continue
            yield (base_id, *(base.get(c) for c in COLUMNS[1:]))
            emitted += 1
            if kind == "look" and look_alikes < clusters and emitted < profiles:
                look_alikes += 1
                other = person(next(counter))
                variant = look_alikes % 3
                if variant == 0:  # family member at the same address
                    other.update(last_name=base["last_name"], zip=base["zip"], address1=base["address1"])
                    while other["first_name"] == base["first_name"]:
                        other["first_name"] = rng.choice(FIRST).capitalize()
                elif variant == 1:  # dots matter outside Gmail
                    local, domain = base["email"].split("@")
                    if domain != "gmail.com":
                        other["email"] = local.replace(".", "") + "@" + domain
                else:  # namesake elsewhere
                    other.update(first_name=base["first_name"], last_name=base["last_name"])
                yield (f"P{next(counter):07d}", *(other.get(c) for c in COLUMNS[1:]))
                emitted += 1

    with ws.store() as store, store.transaction() as db:
        db.conn.executemany(
            f"insert into klaviyo_profiles ({', '.join(COLUMNS)}, properties, subscriptions, mirrored_at) "
            f"values ({', '.join('?' for _ in COLUMNS)}, ?, ?, ?)",
            ((*row, PROPERTIES, SUBSCRIPTIONS, MIRRORED_AT) for row in rows()),
        )
        mark_pulled(db)
    return truth


def workspace(root: Path) -> Workspace:
    """A workspace whose identity rules strip plus addresses (the generator plants `name+shop@` variants)."""
    created = init_workspace(root, "bench")
    text = created.config_path.read_text(encoding="utf-8")
    created.config_path.write_text(text.replace("strip_plus_address = false", "strip_plus_address = true"))
    return Workspace(root)


def mark_pulled(db: Database) -> None:
    """Record a completed `cogent pull klaviyo`, which the audit requires before it trusts the mirror."""
    db["mirror_cursors"].insert_all(
        [
            {"stream": "metrics", "high_water": MIRRORED_AT, "done": 1, "updated_at": MIRRORED_AT},
            {"stream": "events:any", "window_start": "2026-08-01T00:00:00Z", "done": 1, "updated_at": MIRRORED_AT},
        ],
        pk="stream",
    )


def pairs_of(clusters: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(pair)) for members in clusters for pair in combinations(members, 2)}  # type: ignore[misc]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its threads: on a shared machine wall time also counts waiting for a core."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_cogent(root: Path, queue: multiprocessing.Queue) -> None:
    """`cogent audit klaviyo-profiles` minus the rendering: open the state file, read the mirror, search,
    grade and store the findings."""
    started, cpu = time.perf_counter(), cpu_seconds()
    ws = Workspace(root)
    with ws.store() as store:
        [result] = AuditRunner(store, ws.config, load_registry(root)).run(["klaviyo-profiles"])
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"klaviyo-profiles failed: {result.error}")
    clusters = [
        [p["id"] for p in f.evidence["cluster"]["profiles"]] for f in result.findings if "cluster" in f.evidence
    ]
    queue.put((elapsed, cpu_seconds() - cpu, peak_mb(), clusters))


def run_splink(path: Path, limit: int, queue: multiprocessing.Queue) -> None:
    import duckdb
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    source = sqlite3.connect(path)
    columns = list(
        zip(
            *source.execute(f"select {', '.join(COLUMNS[:7])} from klaviyo_profiles order by rowid limit ?", [limit]),
            strict=True,
        )
    )
    table = pa.table({name: list(values) for name, values in zip(COLUMNS[:7], columns, strict=True)})
    started, cpu = time.perf_counter(), cpu_seconds()
    con = duckdb.connect()
    con.register("raw", table)
    # The same cleaning a splink user would do first (splink itself does not normalise identifiers).
    con.execute(
        """
        create table profiles as select
            id as unique_id,
            nullif(lower(trim(email)), '') as email,
            nullif(regexp_replace(regexp_replace(replace(phone_number, '(0)', ''), '[^0-9+]', '', 'g'), '^(0044|0)', '+44'), '') as phone,
            external_id,
            lower(trim(first_name)) as first_name,
            lower(trim(last_name)) as surname,
            upper(replace(zip, ' ', '')) as postcode
        from raw
        """
    )
    api = DuckDBAPI(con)
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.ExactMatch("external_id"),
            cl.NameComparison("first_name"),
            cl.NameComparison("surname"),
            cl.PostcodeComparison("postcode"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("external_id"),
            block_on("postcode", "substr(surname, 1, 2)"),
            block_on("postcode", "substr(first_name, 1, 2)"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(api.register("profiles"), settings, log_level=40)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("phone"), block_on("external_id")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname", "first_name"))
    predictions = linker.inference.predict(threshold_match_probability=0.9)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.95)
    rows = con.execute(
        f"select cluster_id, list(unique_id) from {clusters.physical_name} group by cluster_id having count(*) > 1"
    ).fetchall()
    elapsed = time.perf_counter() - started
    queue.put((elapsed, cpu_seconds() - cpu, peak_mb(), [ids for _, ids in rows]))


def measure(target, *args) -> tuple[float, float, float, list[list[str]]]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.get_context("fork").Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def score(found: list[list[str]], truth: list[list[str]], ids: set[str] | None = None) -> tuple[float, float, int, int]:
    true_pairs = pairs_of(truth if ids is None else [[i for i in c if i in ids] for c in truth])
    found_pairs = pairs_of(found)
    hits = len(true_pairs & found_pairs)
    precision = hits / len(found_pairs) if found_pairs else 1.0
    recall = hits / len(true_pairs) if true_pairs else 1.0
    return precision, recall, len(found_pairs), len(true_pairs)


def report(name: str, measured: tuple, truth: list[list[str]], ids: set[str] | None = None) -> None:
    elapsed, cpu, peak, found = measured
    precision, recall, found_pairs, true_pairs = score(found, truth, ids)
    print(
        f"{name:<28} wall {elapsed:7.1f} s  cpu {cpu:7.1f} s  peak memory {peak:6.0f} MB  clusters {len(found):6d}  "
        f"pairs found {found_pairs:6d} / planted {true_pairs:6d}  precision {precision:.4f}  recall {recall:.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=20_000)
    parser.add_argument(
        "--splink-profiles", type=int, default=None, help="Rows given to splink (default: all; 0 skips splink)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "workspace"
        started = time.perf_counter()
        truth = generate(workspace(root), args.profiles, args.clusters)
        state = Workspace(root).state_path
        count = sqlite3.connect(state).execute("select count(*) from klaviyo_profiles").fetchone()[0]
        print(
            f"generated {count:,} profiles with {len(truth):,} planted duplicate clusters "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        report("cogent (SQLite + rapidfuzz)", measure(run_cogent, root), truth)
        if args.splink_profiles == 0:
            return
        try:
            import splink
        except ImportError:
            print("splink is not installed: `pip install -e .[bench]` adds it for the comparison.")
            return
        limit = args.splink_profiles or count
        ids = {
            row[0]
            for row in sqlite3.connect(state).execute("select id from klaviyo_profiles order by rowid limit ?", [limit])
        }
        if limit < count:
            print(
                f"splink runs on the first {limit:,} profiles (of {count:,}); cogent on the same subset for comparison:"
            )
            subset = workspace(Path(folder) / "subset")
            with subset.store() as store:
                store.db.execute("attach ? as full", [str(state)])
                with store.transaction() as db:
                    db.execute(
                        f"insert into klaviyo_profiles select * from full.klaviyo_profiles order by rowid limit {limit}"
                    )
                    mark_pulled(db)
            report("cogent (same subset)", measure(run_cogent, subset.root), truth, ids)
        report(f"splink {splink.__version__} (DuckDB)", measure(run_splink, state, limit), truth, ids)


if __name__ == "__main__":
    sys.exit(main())
