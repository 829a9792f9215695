"""``make bench-training``: the training and gate stages on 100k and 1M users, held whole and streamed.

Per size (users with sequences, ``--users``) it writes one day's feature partition as the Spark job
would (sequences in Parquet row groups, the item vocabulary, ``_stats.json``; every user walks the
items with a stride of their own, so a model has something to learn), then runs ``train_candidate``
(one model, ``--epochs``) and ``evaluate_candidates`` each in a process of its own, exactly as the
DAG calls them (``benchmarks.scale.stage``), twice: with the day held whole
(``training.stream_above_users: null``) and read in chunks from the Parquet
(``stream_above_users: 0``, ``stream_chunk_users``). Per run it measures wall and CPU seconds and
peak resident memory, prints them side by side with how each grows from the smallest size to the
largest, and writes ``var/reports/bench-training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.features.run import measure
from pipelines import columns as C
from pipelines import lake
from pipelines.config import REPO_ROOT, load_config
from pipelines.io import write_json_atomic

DS = "2026-11-27"
STAGES = ("train_candidate", "evaluate_candidates")
MODES = {"whole": "null", "streamed": "0"}


def write_day(features_root: Path, users: int, items: int, seed: int = 0, group: int = 100_000) -> int:
    """One day's feature partition of ``users`` sequences over ``items`` items; the rows written."""
    folder = lake.partition_path(features_root, DS)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / lake.SEQUENCES).mkdir(parents=True)
    (folder / lake.ITEM_VOCAB).mkdir()
    rng = np.random.default_rng(seed)
    schema = pa.schema([(C.USER_KEY, pa.string()), (C.USER_BUCKET, pa.int32()),
                        (C.ITEM_SEQ, pa.list_(pa.int32())), (C.PURCHASED_ITEMS, pa.list_(pa.int32()))])
    with pq.ParquetWriter(folder / lake.SEQUENCES / "part-00000.parquet", schema) as writer:
        for start in range(0, users, group):
            count = min(group, users - start)
            lengths = rng.integers(3, 41, count)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            row = np.repeat(np.arange(count), lengths)
            position = np.arange(offsets[-1]) - offsets[:-1][row]
            first, stride = rng.integers(0, items, count), rng.integers(1, 4, count)
            values = ((first[row] + position * stride[row]) % items + 1).astype(np.int32)
            keys = pa.array([f"{u:064x}" for u in range(start, start + count)])
            writer.write_table(pa.table({
                C.USER_KEY: keys, C.USER_BUCKET: pa.array(np.arange(start, start + count) % 1000, pa.int32()),
                C.ITEM_SEQ: pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
                C.PURCHASED_ITEMS: pa.array([[]] * count, pa.list_(pa.int32()))}, schema=schema))
    pq.write_table(pa.table({C.ITEM_ID: [f"item-{i}" for i in range(1, items + 1)],
                             C.ITEM_IDX: pa.array(range(1, items + 1), pa.int32()),
                             C.CATEGORY: ["c"] * items, C.FIRST_SEEN_DT: [DS] * items}),
                   folder / lake.ITEM_VOCAB / "part-00000.parquet")
    write_json_atomic(folder / lake.FEATURE_STATS, {"ds": DS, "vocab_version": DS, "window_start": DS,
                                                    "window_end": DS, "users_with_sequences": users, "items": items})
    return users


def run_env(root: Path, lake_dir: Path, mode: str, epochs: int, chunk: int, batch: int) -> dict[str, str]:
    """The environment of one run: its own MLflow and state under ``root``, the shared lake, one model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE__", "AIRFLOW"))}
    for key, path in {"var_dir": root, "lake_dir": lake_dir, "gx_dir": root / "gx", "mlflow_dir": root / "mlflow",
                      "reports_dir": root / "reports"}.items():
        env[f"PIPELINE__PATHS__{key.upper()}"] = str(path)
    env.update({"PIPELINE__TRAINING__MODELS": "[gru4rec]", "PIPELINE__TRAINING__EPOCHS": str(epochs),
                "PIPELINE__TRAINING__BATCH_SIZE": str(batch),
                "PIPELINE__TRAINING__MODEL_EPOCHS": "{}", "PIPELINE__TRAINING__STREAM_ABOVE_USERS": MODES[mode],
                "PIPELINE__TRAINING__STREAM_CHUNK_USERS": str(chunk), "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])})
    return env


def bench_size(root: Path, users: int, items: int, epochs: int, chunk: int, batch: int) -> list[dict]:
    folder = root / f"users-{users}"
    shutil.rmtree(folder, ignore_errors=True)
    lake_dir = folder / "lake"
    config = load_config(env=run_env(folder, lake_dir, "whole", epochs, chunk, batch))
    started = time.perf_counter()
    write_day(config.layout.features, users, items)
    for check in lake.DATA_CHECKS:
        write_json_atomic(config.layout.check_record(DS, check), {"success": True})
    print(f"  wrote {users:,} users' sequences over {items:,} items in {time.perf_counter() - started:.0f} s",
          flush=True)
    entries = []
    for mode in MODES:
        env = run_env(folder / mode, lake_dir, mode, epochs, chunk, batch)
        state = folder / mode / "state"
        state.mkdir(parents=True)
        for stage in STAGES:
            run = measure([sys.executable, "-m", "benchmarks.scale.stage", stage, DS, str(state)], env)
            summary = json.loads((state / f"{stage}.json").read_text())  # measure() stops on a failed stage
            entry = {"users": users, "items": items, "mode": mode, "stage": stage, "epochs": epochs,
                     "chunk_users": chunk if mode == "streamed" else None, "batch_size": batch,
                     **{k: run[k] for k in ("seconds", "cpu_seconds", "peak_gib")}, "detail": _detail(stage, summary)}
            entries.append(entry)
            print(f"  {mode:<9} {stage:<20} {run['seconds']:>8.1f} s {run['cpu_seconds']:>8.1f} cpu s "
                  f"{run['peak_gib']:>6.2f} GiB  {entry['detail']}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return entries


def _detail(stage: str, summary: dict) -> dict:
    if stage == "train_candidate":
        return {"test_ndcg_at_10": round(summary["test"]["ndcg_at_10"], 4), "epochs_run": summary["epochs_run"]}
    candidate = summary["candidates"][0]
    return {"num_test_users": summary["num_test_users"], "popularity_ndcg_at_10":
            round(summary["popularity"]["ndcg_at_10"], 4), "candidate_lift": round(
                candidate["evidence"]["popularity"]["relative"], 3) if "popularity" in candidate["evidence"] else None}


def format_table(entries: list[dict]) -> str:
    sizes = sorted({e["users"] for e in entries})
    lines = [f"{'users':>10} {'mode':<9} {'stage':<20} {'seconds':>8} {'cpu s':>8} {'peak GiB':>8}"]
    for e in sorted(entries, key=lambda e: (e["users"], e["stage"], e["mode"])):
        lines.append(f"{e['users']:>10,} {e['mode']:<9} {e['stage']:<20} {e['seconds']:>8.1f} "
                     f"{e['cpu_seconds']:>8.1f} {e['peak_gib']:>8.2f}")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        lines.append(f"growth from {small:,} to {large:,} users ({large / small:.0f}x), peak memory and seconds:")
        for stage in STAGES:
            for mode in MODES:
                pick = {e["users"]: e for e in entries if e["stage"] == stage and e["mode"] == mode}
                lines.append(f"  {stage:<20} {mode:<9} memory {pick[large]['peak_gib'] / pick[small]['peak_gib']:>5.2f}x"
                             f"  seconds {pick[large]['seconds'] / pick[small]['seconds']:>5.2f}x")
    for size in sizes:
        for stage in STAGES:
            pick = {e["mode"]: e for e in entries if e["stage"] == stage and e["users"] == size}
            lines.append(f"{size:>10,} users {stage:<20} streamed vs whole: memory "
                         f"{pick['streamed']['peak_gib'] / pick['whole']['peak_gib']:.2f}x, seconds "
                         f"{pick['streamed']['seconds'] / pick['whole']['seconds']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000], help="users per day, each a run")
    parser.add_argument("--items", type=int, default=2_000, help="items in the vocabulary")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the one model (GRU4Rec)")
    parser.add_argument("--batch-size", type=int, default=1024,
                        help="training.batch_size (larger than the nightly 128: fewer steps, the same data held)")
    parser.add_argument("--chunk-users", type=int, default=100_000, help="training.stream_chunk_users when streamed")
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "var" / "bench-training", help="scratch folder")
    parser.add_argument("--report", type=Path, default=None, help="JSON report (default var/reports/bench-training.json)")
    args = parser.parse_args(argv)
    if any(users < 1 for users in args.users) or args.items < 2:
        parser.error("--users must be >= 1 and --items >= 2")
    entries = []
    for users in args.users:
        print(f"{users:,} users:", flush=True)
        entries += bench_size(args.root, users, args.items, args.epochs, args.chunk_users, args.batch_size)
    print(format_table(entries))
    report = args.report or load_config().layout.reports_dir / "bench-training.json"
    write_json_atomic(report, {"entries": entries, "load_average": os.getloadavg()})
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
