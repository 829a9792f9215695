"""The day's outputs as Amazon Personalize-style JSON Lines, for tools that take files.

    activation/exports/dt=D/recommendations.jsonl
        {"input": {"userId": "<customer id>"}, "output": {"recommendedItems": [...], "scores": [...]}}
    activation/exports/dt=D/audiences.jsonl
        {"input": {"campaign": "<campaign>"}, "output": {"usersList": [...], "scores": [...]}}

the shapes of Personalize's batch inference and batch segment jobs (a segment is keyed by the
campaign here, not by one item). They hold customer ids, so they live in the activation zone, inside
the raw zone's trust boundary, and the partition is written atomically like every other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from pipelines import filesystem as fs
from pipelines.io import atomic_partition

RECOMMENDATIONS_FILE = "recommendations.jsonl"
AUDIENCES_FILE = "audiences.jsonl"


def write_exports(target: Path, recommendations: pa.Table, audiences: pa.Table) -> dict[str, int]:
    """Write both files into the partition ``target``; the lines written per file."""
    users = _grouped(recommendations, "customer_id", "item_id", "score")
    segments = _grouped(audiences, "campaign", "customer_id", "affinity")
    with atomic_partition(target) as staging:
        _write_lines(staging / RECOMMENDATIONS_FILE, users,
                     lambda customer, items, scores: {"input": {"userId": customer},
                                                      "output": {"recommendedItems": items, "scores": scores}})
        _write_lines(staging / AUDIENCES_FILE, segments,
                     lambda campaign, members, scores: {"input": {"campaign": campaign},
                                                        "output": {"usersList": members, "scores": scores}})
    return {RECOMMENDATIONS_FILE: len(users), AUDIENCES_FILE: len(segments)}


def _write_lines(path: Path, groups: dict[str, tuple[list, list]], line) -> None:
    fs.write_text(path, "".join(json.dumps(line(key, values, scores), ensure_ascii=False) + "\n"
                                for key, (values, scores) in groups.items()))


def _grouped(table: pa.Table, key: str, value: str, score: str) -> dict[str, tuple[list, list]]:
    """``{key: ([values], [scores])}`` in rank order, keys in sorted order (reruns write the same bytes)."""
    ordered = table.sort_by([(key, "ascending"), ("rank", "ascending")])
    groups: dict[str, tuple[list, list]] = {}
    for k, v, s in zip(ordered.column(key).to_pylist(), ordered.column(value).to_pylist(),
                       ordered.column(score).to_pylist(), strict=True):
        items, scores = groups.setdefault(k, ([], []))
        items.append(v)
        scores.append(round(float(s), 6))
    return groups
