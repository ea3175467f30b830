"""Benchmark of the MBAT JSON encoder: read-back capacity, nesting, recall, speed.

Run ``python -m bench.vsa_bench`` (``--quick`` for a smaller run); prints markdown
tables. The real corpus is this machine's Debian package records (``apt-cache
dumpavail``, else ``/var/lib/dpkg/status``) as JSON objects.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np

import vsa
from leanvec import exact_search

DIM = 1024
_FIELDS = {
    "Package": "name",
    "Version": "version",
    "Section": "section",
    "Priority": "priority",
    "Installed-Size": "installed_size",
    "Size": "size",
    "Depends": "depends",
    "Architecture": "architecture",
    "Maintainer": "maintainer",
    "Description": "description",
}


# ------------------------------------------------------------------ corpora
def debian_records(limit: int) -> list[dict]:
    """Debian package stanzas as JSON-like dicts with 10 fields."""
    try:
        text = subprocess.run(
            ["apt-cache", "dumpavail"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        text = Path("/var/lib/dpkg/status").read_text(errors="replace")
    records = []
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, flags=re.MULTILINE))
        if "Package" not in fields:
            continue
        record = {name: fields.get(key, "") for key, name in _FIELDS.items()}
        for key in ("installed_size", "size"):
            record[key] = int(record[key]) if record[key].isdigit() else 0
        record["depends"] = [
            d.split("|")[0].split("(")[0].strip()
            for d in record["depends"].split(",")
            if d.strip()
        ]
        records.append(record)
    random.Random(0).shuffle(records)
    return records[:limit]


def generated_records(n: int, n_fields: int, n_values: int, seed: int) -> list[dict]:
    """Records of ``n_fields`` string fields, each one of ``n_values`` symbols."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_values, size=(n, n_fields))
    return [{f"f{j}": f"v{p}" for j, p in enumerate(row)} for row in picks]


def perturb(
    records: list[dict],
    n_changed: int,
    count: int,
    seed: int,
    mode: str = "replace",
) -> tuple[list[dict], np.ndarray]:
    """Copies of ``count`` records with ``n_changed`` top-level fields changed.

    ``mode="replace"``: the field takes the value of another random record.
    ``mode="edit"``: a small edit instead: a number is scaled by 1 +- 5 %, a
    string loses one word (or gets one appended), a list loses its last item.
    Returns (queries, source ids).
    """
    rng = random.Random(seed)
    sources = np.array(rng.sample(range(len(records)), count))
    queries = []
    for src in sources:
        query = dict(records[src])
        for key in rng.sample(sorted(query), n_changed):
            if mode == "edit":
                query[key] = _edit(query[key], rng)
                continue
            other = records[rng.randrange(len(records))]
            while other[key] == query[key] and len(records) > 1:
                other = records[rng.randrange(len(records))]
            query[key] = other[key]
        queries.append(query)
    return queries, sources


def _edit(value: object, rng: random.Random) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return type(value)(value * (1 + rng.choice((-0.05, 0.05))) + 1)
    if isinstance(value, list):
        return value[:-1] if value else ["extra"]
    words = str(value).split()
    if len(words) > 1:
        words.pop(rng.randrange(len(words)))
        return " ".join(words)
    return f"{value} extra"


# --------------------------------------------------------------- encoders
def hashing_vectors(records: list[dict], dim: int) -> np.ndarray:
    """scikit-learn FeatureHasher over flattened ``path=value`` tokens."""
    from sklearn.feature_extraction import FeatureHasher

    def tokens(value, path=""):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from tokens(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for item in value:
                yield from tokens(item, path + "[]")
        else:
            yield f"{path}={value}"

    hasher = FeatureHasher(n_features=dim, input_type="string")
    return (
        hasher.transform(list(tokens(r)) for r in records).toarray().astype(np.float32)
    )


def recall_at_1(
    database: np.ndarray, queries: np.ndarray, sources: np.ndarray
) -> float:
    found = exact_search(database, queries, 1, "cosine")
    return float(np.mean(found.ids[:, 0] == sources))


def _methods(weights: dict[str, float]) -> dict:
    return {
        "MBAT (hadamard roles)": lambda r: vsa.JSONEncoder(DIM).encode(r),
        "MBAT, tuned weights": lambda r: vsa.JSONEncoder(DIM, weights=weights).encode(
            r
        ),
        "MAP (sign vectors, element-wise)": lambda r: vsa.JSONEncoder(
            DIM, roles="sign"
        ).encode(r),
        "FeatureHasher path=value": lambda r: hashing_vectors(r, DIM),
    }


def tune_weights(records: list[dict], n_changed: int) -> dict[str, float]:
    """Coordinate search over per-field weights in {0.5, 1, 2} on held-out records."""
    fields = sorted(records[0])
    queries, sources = perturb(records, n_changed, 300, seed=99)
    weights = {f: 1.0 for f in fields}

    def score(w):
        enc = vsa.JSONEncoder(DIM, weights=w)
        return recall_at_1(enc.encode(records), enc.encode(queries), sources)

    best = score(weights)
    for field in fields:
        for value in (0.5, 2.0):
            trial = dict(weights, **{field: value})
            result = score(trial)
            if result > best:
                best, weights = result, trial
    return {f: w for f, w in weights.items() if w != 1.0}


# ------------------------------------------------------------------ sections
def capacity_table(n_records: int) -> None:
    print("\n### Field read-back accuracy (N = 1000 candidates)\n")
    print("| D | F | D / (F-1) | measured | formula | diff |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    values = [f"v{i}" for i in range(1000)]
    # D = 33 (F - 1) is the 99 % point of the formula; 330 and 528 use dense roles.
    for dim, n_fields in [
        (256, 5),
        (256, 9),
        (512, 9),
        (512, 17),
        (1024, 17),
        (1024, 32),
        (1024, 64),
        (330, 11),
        (528, 17),
    ]:
        records = generated_records(n_records, n_fields, 1000, seed=dim + n_fields)
        roles = "hadamard" if dim & (dim - 1) == 0 else "dense"
        enc = vsa.JSONEncoder(dim, seed=1, roles=roles, string_tokens=0.0)
        vectors = enc.encode(records)
        hits = 0
        for j in range(n_fields):
            found = enc.query(vectors, f"f{j}", candidates=values, k=1, threshold=-1)
            hits += sum(f[0][0] == r[f"f{j}"] for f, r in zip(found, records))
        measured = hits / (n_records * n_fields)
        formula = vsa.expected_accuracy(dim, n_fields, 1000)
        print(
            f"| {dim} | {n_fields} | {dim / (n_fields - 1):.1f} | {measured:.4f} "
            f"| {formula:.4f} | {measured - formula:+.4f} |"
        )


def nesting_table(n_pairs: int) -> None:
    print("\n### Swapped nesting: cosine of {a: {b: x}} and {b: {a: x}}\n")
    print("| roles | mean cosine | max abs cosine |")
    print("| --- | ---: | ---: |")
    # Ten key names, so the dense run builds only ten 1024 x 1024 matrices.
    keys = [f"key{i}" for i in range(10)]
    pairs = [
        (
            {keys[i % 10]: {keys[(i + 1 + (i // 10) % 9) % 10]: f"x{i}"}},
            {keys[(i + 1 + (i // 10) % 9) % 10]: {keys[i % 10]: f"x{i}"}},
        )
        for i in range(n_pairs)
    ]
    for roles in ("hadamard", "dense", "sign"):
        enc = vsa.JSONEncoder(DIM, roles=roles)
        left = enc.encode([p[0] for p in pairs])
        right = enc.encode([p[1] for p in pairs])
        cos = np.einsum("ij,ij->i", left, right)
        print(f"| {roles} | {cos.mean():.4f} | {np.abs(cos).max():.4f} |")


def recall_table(
    name: str,
    records: list[dict],
    n_queries: int,
    weights: dict,
) -> None:
    print(
        f"\n### Recall@1 of the source record, {name} "
        f"({len(records)} records, {n_queries} queries, D = {DIM})\n"
    )
    methods = _methods(weights)
    print("| fields changed | " + " | ".join(methods) + " |")
    print("| ---: |" + " ---: |" * len(methods))
    databases = {name: encode(records) for name, encode in methods.items()}
    for mode, n_changed in [("replace", n) for n in (1, 2, 3, 4)] + [("edit", 4)]:
        queries, sources = perturb(records, n_changed, n_queries, n_changed, mode)
        row = [
            recall_at_1(databases[name], encode(queries), sources)
            for name, encode in methods.items()
        ]
        label = f"{n_changed}" if mode == "replace" else f"{n_changed}, small edits"
        print(f"| {label} | " + " | ".join(f"{r:.3f}" for r in row) + " |")


def throughput_table(n_records: int) -> None:
    print(f"\n### Encoding throughput, D = {DIM}, 10 fields, {n_records} records\n")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    records = [
        {
            "id": i,
            "name": " ".join(rng.sample(words, 2)),
            "city": rng.choice(words),
            "age": rng.randint(0, 90),
            "score": rng.random(),
            "tags": rng.sample(words, 3),
            "ok": rng.random() < 0.5,
            "zip": rng.randint(1000, 9999),
            "note": " ".join(rng.sample(words, 8)),
            "kind": rng.choice("abc"),
        }
        for i in range(n_records)
    ]
    print("| encoder | records/s (wall) | records per CPU-second |")
    print("| --- | ---: | ---: |")
    encoders = {
        "MBAT (hadamard)": vsa.JSONEncoder(DIM).fit(records[:2000]).encode,
        "MAP (sign)": vsa.JSONEncoder(DIM, roles="sign").encode,
        "FeatureHasher": lambda r: hashing_vectors(r, DIM),
    }
    for name, encode in encoders.items():
        encode(records[:200])
        wall, cpu = time.perf_counter(), time.process_time()
        encode(records)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"| {name} | {n_records / wall:,.0f} | {n_records / cpu:,.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller run")
    parser.add_argument("--sections", default="capacity,nesting,recall,throughput")
    args = parser.parse_args(argv)
    scale = 0.25 if args.quick else 1.0
    sections = args.sections.split(",")
    if "capacity" in sections:
        capacity_table(int(400 * scale))
    if "nesting" in sections:
        nesting_table(200)
    if "recall" in sections:
        debian = debian_records(int(20_000 * scale) + 3000)
        held_out, debian = debian[:3000], debian[3000:]
        weights = tune_weights(held_out, 4)
        print(
            f"\nTuned weights (coordinate search on 3000 held-out records): {weights}"
        )
        recall_table("Debian packages", debian, int(1000 * scale), weights)
        generated = generated_records(int(20_000 * scale), 10, 10, seed=5)
        recall_table(
            "generated, 10 fields of 10 values each", generated, int(1000 * scale), {}
        )
    if "throughput" in sections:
        throughput_table(int(20_000 * scale))


print = functools.partial(print, flush=True)

if __name__ == "__main__":
    main()
