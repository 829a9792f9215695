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
    args = parser.parse_args(argv)

    from pipelines.models import build_model
    from pipelines.models.training import score_over_vocab
    from pipelines.scoring.audiences import campaign_affinity
    from pipelines.scoring.rules import _best, _best_exhaustive

    rng = np.random.default_rng(0)
    model = build_model("gru4rec", args.items)
    lengths = rng.integers(3, args.max_len + 1, args.users)
    items = rng.integers(1, args.items + 1, (args.users, args.max_len)).astype(np.int32)
    items[np.arange(args.max_len)[None, :] < (args.max_len - lengths)[:, None]] = 0  # left-padded
    users = np.zeros(args.users, np.int32)
    campaign_matrix = np.zeros((args.items + 1, CAMPAIGNS), np.float32)
    campaign_matrix[rng.integers(1, args.items + 1, 40 * CAMPAIGNS), np.repeat(np.arange(CAMPAIGNS), 40)] = 1.0
    seconds = {step: 0.0 for step in ("model", "top-k blocks", "top-k every column", "affinity float32",
                                      "affinity float64")}
    print(f"bench-scoring: {args.users:,} users over {args.items:,} items, batches of {args.batch_size}, "
          f"top {TOP_K}, {CAMPAIGNS} campaigns, {os.cpu_count()} cores ...", flush=True)
    score_over_vocab(model, {"items": items[:8], "user": users[:8]}, args.items, 8)  # trace once, untimed
    for start in range(0, args.users, args.batch_size):
        part = slice(start, start + args.batch_size)
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
    print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
