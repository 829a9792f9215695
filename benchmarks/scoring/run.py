"""``make bench-scoring``: what scoring costs per user at a 10M-event shop's size, and where it goes.

Scores ``--users`` users (default 100,000) over ``--items`` items (default 50,000: ``make
bench-scale``'s vocabulary at 10M events a day) with the GRU4Rec champion's shape (random weights:
the cost does not depend on them), batch by batch as ``score_users`` does, and times each step of a
batch side by side in one run:

- ``model``: ``score_over_vocab`` (the forward pass and the logits over every item);
- ``top-k``: each user's 20 best items (``rules._best``) by the block floor, against sorting every column
  (``rules._best_exhaustive``, the way before); both must pick the same items, or the run fails;
- ``affinity``: each campaign's softmax share (``audiences.campaign_affinity``, float32 exponentials),
  against the float64 way before; they must agree to 1e-5.

It prints seconds per step and variant for the users scored, the same projected linearly to
500,000 users (the issue's goal: under 3 minutes on 2 cores), and the speed-ups.

Then it scores ``--engine-users`` users (default 20,000; 0 skips it) the two ways ``score_users``
can, side by side: in this process (``rules.ranked_top_k`` with the affinities tapped), and on Spark
``local[*]`` (``scoring.distributed.SparkScorer``, what ``scoring.spark_above_users`` switches to),
timing the Spark session's start apart from the job, and the job a second time (its Python
workers then up, with the champion loaded). Both must give the same lists; the Spark
figure says what spreading the work over executors costs on one machine, where it cannot gain
(these are the same cores): the gain comes from executors on more machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

TOP_K = 20
CAMPAIGNS = 8
GOAL_USERS = 500_000


def affinity_float64(scores: np.ndarray, campaign_matrix: np.ndarray) -> np.ndarray:
    """``campaign_affinity`` as it was before: every step in float64."""
    logits = np.asarray(scores, np.float64)[:, 1:]
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return (probabilities @ campaign_matrix[1:]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=512, help="scoring.batch_size")
    parser.add_argument("--max-len", type=int, default=50, help="features.max_seq_len")
    parser.add_argument("--engine-users", type=int, default=20_000,
                        help="users scored in this process and on Spark side by side (0: skip)")
    args = parser.parse_args(argv)

    from pipelines.models import build_model
    from pipelines.models.training import score_over_vocab
    from pipelines.scoring.audiences import campaign_affinity
    from pipelines.scoring.rules import _best, _best_exhaustive

    rng = np.random.default_rng(0)
    model = build_model("gru4rec", args.items)
    rows = max(args.users, args.engine_users)  # users generated: enough for both parts
    lengths = rng.integers(3, args.max_len + 1, rows)
    items = rng.integers(1, args.items + 1, (rows, args.max_len)).astype(np.int32)
    items[np.arange(args.max_len)[None, :] < (args.max_len - lengths)[:, None]] = 0  # left-padded
    users = np.zeros(rows, np.int32)
    campaign_matrix = np.zeros((args.items + 1, CAMPAIGNS), np.float32)
    campaign_matrix[rng.integers(1, args.items + 1, 40 * CAMPAIGNS), np.repeat(np.arange(CAMPAIGNS), 40)] = 1.0
    seconds = {step: 0.0 for step in ("model", "top-k blocks", "top-k every column", "affinity float32",
                                      "affinity float64")}
    print(f"bench-scoring: {args.users:,} users over {args.items:,} items, batches of {args.batch_size}, "
          f"top {TOP_K}, {CAMPAIGNS} campaigns, {os.cpu_count()} cores ...", flush=True)
    score_over_vocab(model, {"items": items[:8], "user": users[:8]}, args.items, 8)  # trace once, untimed
    for start in range(0, args.users, args.batch_size):
        part = slice(start, min(start + args.batch_size, args.users))
        clock = time.perf_counter()
        scores = score_over_vocab(model, {"items": items[part], "user": users[part]}, args.items,
                                  args.batch_size)
        seconds["model"] += time.perf_counter() - clock
        timed = {}
        for step, run, argument in (("top-k blocks", _best, TOP_K),
                                    ("top-k every column", _best_exhaustive, TOP_K),
                                    ("affinity float32", campaign_affinity, campaign_matrix),
                                    ("affinity float64", affinity_float64, campaign_matrix)):
            clock = time.perf_counter()
            timed[step] = run(scores, argument)
            seconds[step] += time.perf_counter() - clock
        for (got, want) in zip(timed["top-k blocks"], timed["top-k every column"], strict=True):
            if not np.array_equal(got, want):
                raise SystemExit(f"bench-scoring: the block floor picked other items than sorting every "
                                 f"column in the batch at user {start}: a bug in rules._best")
        if not np.allclose(timed["affinity float32"], timed["affinity float64"], rtol=1e-5, atol=1e-9):
            raise SystemExit(f"bench-scoring: float32 affinity differs from float64 past 1e-5 at user {start}")
    scale = GOAL_USERS / args.users
    print(f"{'step':<20} {'seconds':>9} {'per 500k users':>15}")
    for step, value in seconds.items():
        print(f"{step:<20} {value:>9.1f} {value * scale:>13.1f} s")
    now = seconds["model"] + seconds["top-k blocks"] + seconds["affinity float32"]
    before = seconds["model"] + seconds["top-k every column"] + seconds["affinity float64"]
    print(f"top-k: {seconds['top-k every column'] / seconds['top-k blocks']:.2f}x faster by the block floor; "
          f"affinity: {seconds['affinity float64'] / seconds['affinity float32']:.2f}x faster in float32; "
          f"the same items and affinities: True")
    print(f"model + top-k + affinity per 500k users (projected linearly from {args.users:,}): "
          f"{now * scale:.1f} s now, {before * scale:.1f} s before ({before / now:.2f}x); "
          f"the goal is under 180 s for the whole task")
    if args.engine_users:
        engines(model, items[:args.engine_users], users[:args.engine_users], campaign_matrix, args)
    print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def engines(model, items: np.ndarray, users: np.ndarray, campaign_matrix: np.ndarray, args) -> None:
    """The lists and affinities of ``score_users``' pass, in this process and on Spark ``local[*]``, side by side."""
    import pyarrow as pa

    from pipelines import columns as C
    from pipelines.config import load_config
    from pipelines.models.training import score_over_vocab
    from pipelines.scoring.audiences import campaign_affinity
    from pipelines.scoring.distributed import SparkScorer, scoring_session
    from pipelines.scoring.rules import RuleCounts, item_facts, plan_rules, ranked_top_k

    n = len(items)
    vocab = pa.table({C.ITEM_ID: [f"i{i}" for i in range(1, args.items + 1)],
                      C.ITEM_IDX: pa.array(range(1, args.items + 1), pa.int32())})
    names = [f"c{j}" for j in range(CAMPAIGNS)]
    plan = plan_rules(load_config().scoring.rules, {}, item_facts(vocab, None), names, campaign_matrix)
    inputs = {"items": items, "user": users}
    tapped = []

    def scored_and_tapped(batch):
        scores = score_over_vocab(model, batch, args.items, args.batch_size)
        tapped.append(campaign_affinity(scores, campaign_matrix))
        return scores

    print(f"engines: {n:,} users, lists of {TOP_K} and {CAMPAIGNS} campaigns' affinities ...", flush=True)
    clock = time.perf_counter()
    local_items, _ = ranked_top_k(scored_and_tapped, inputs, args.items, TOP_K, plan, None, RuleCounts(),
                                  batch_size=args.batch_size)
    in_process = time.perf_counter() - clock
    clock = time.perf_counter()
    with scoring_session("local[*]", "bench-scoring", "4g") as spark:
        spark.sparkContext.setLogLevel("ERROR")
        started = time.perf_counter() - clock
        clock = time.perf_counter()
        scorer = SparkScorer(spark, model, args.items, args.batch_size)
        spark_items, _, spark_affinity = scorer.ranked_top_k(inputs, TOP_K, plan, None, RuleCounts(), campaign_matrix)
        on_spark = time.perf_counter() - clock
        clock = time.perf_counter()  # again: the Python workers are up, TensorFlow imported, the champion loaded
        scorer.ranked_top_k(inputs, TOP_K, plan, None, RuleCounts(), campaign_matrix)
        warm = time.perf_counter() - clock
        partitions = max(2 * spark.sparkContext.defaultParallelism, -(-n // scorer.rows_per_partition))
    differ = int((local_items != spark_items).any(axis=1).sum())
    close = np.allclose(np.concatenate(tapped), spark_affinity, rtol=1e-4, atol=1e-9)
    if differ > n // 1000 or not close:
        raise SystemExit(f"bench-scoring: Spark's lists differ for {differ} of {n} users (affinities close: {close})")
    scale = GOAL_USERS / n
    print(f"{'engine':<28} {'seconds':>9} {'per 500k users':>15}")
    print(f"{'in this process':<28} {in_process:>9.1f} {in_process * scale:>13.1f} s")
    print(f"{f'Spark local[*], {partitions} partitions':<28} {on_spark:>9.1f} {on_spark * scale:>13.1f} s"
          f"   (+ {started:.1f} s to start the session)")
    print(f"{'the same again, workers warm':<28} {warm:>9.1f} {warm * scale:>13.1f} s")
    print(f"Spark / in process: {on_spark / in_process:.2f}x the first time, {warm / in_process:.2f}x warm "
          f"(the first job starts each Python worker, imports TensorFlow and loads the champion); "
          f"users whose lists differ (float32 ties): {differ}")


if __name__ == "__main__":
    sys.exit(main())
