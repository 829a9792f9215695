"""The GPU check of the training, as one prepared script for an NVIDIA H200 (``make bench-h200``), <= 10 minutes.

Run on the GPU host after ``make setup GPU=1`` (JAX with CUDA 12 wheels in the project's virtualenv)::

    make bench-h200            # = KERAS_BACKEND=jax .venv/bin/python -m benchmarks.models.h200

Four phases, each time-boxed so the whole stays under ``--budget-seconds`` (600), with the figures
printed as they come and saved to ``var/reports/bench-h200.json``:

1. the device: JAX's devices and the precision policy (bfloat16 compute, float32 weights);
2. seconds per epoch of Caser, GRU4Rec and SASRec on Amazon Games with the paper settings, side by
   side (``bench_models.bench_variant``: the steady epoch after the compiling one), and SASRec's
   against the goal of 0.42 s (5x the 2.1 s the public PyTorch SASRec takes per epoch on the same GPU);
3. where an epoch goes: the input pipeline alone (building one epoch of batches and negatives on the
   host) against the whole epoch, so a host-bound epoch shows as such;
4. SASRec for the paper's 200 epochs (sampled validation every 5), with the training seconds at which
   its validation NDCG@10 first reached the paper's 0.536 (goal: under 60 s), then its test row beside
   the published one; then GRU4Rec and Caser with what time is left, their rows beside theirs.

Nothing is asserted: the figures are the result. Without a GPU it stops at phase 1 with what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from benchmarks.models.paper_benchmark import (
    DEFAULT_DATASET,
    PAPER_SETTINGS,
    benchmark_splits,
    dataset_name,
    paper_params,
    published_for,
)

PYTORCH_SASREC_EPOCH_S = 2.1  # the public PyTorch SASRec, one epoch of Amazon Games on the same GPU
SASREC_EPOCH_GOAL_S = PYTORCH_SASREC_EPOCH_S / 5
TARGET_NDCG = 0.536  # the SASRec paper's NDCG@10 on Amazon Games (sampled protocol)


def device_phase() -> dict[str, Any]:
    try:
        import jax  # noqa: F401 - before Keras, whose JAX backend needs it
    except ImportError:
        raise SystemExit("error: JAX is not installed in this virtualenv; on the GPU host run make setup GPU=1, "
                         "then make bench-h200") from None
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("error: run with KERAS_BACKEND=jax (make bench-h200 sets it)")
    import jax

    try:
        gpus = [str(d) for d in jax.devices("gpu")]
    except RuntimeError as err:
        raise SystemExit(f"error: JAX sees no GPU ({str(err).splitlines()[0]}); on the GPU host run make setup GPU=1, "
                         "then make bench-h200") from None
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return {"devices": gpus, "jax": jax.__version__, "keras": keras.__version__,
            "policy": keras.mixed_precision.global_policy().name}


def epoch_phase(splits, deadline: float) -> list[dict[str, Any]]:
    from benchmarks.models.bench_models import bench_variant, format_table

    rows = []
    for variant in ("sasrec", "gru4rec", "caser"):
        if time.monotonic() > deadline:
            print(f"  {variant}: skipped, the epoch phase's time is up", flush=True)
            continue
        rows.append(bench_variant(variant, splits, epochs=3, jit_compile="auto"))
        print(format_table(rows[-1:], "").splitlines()[-1], flush=True)
    sasrec = next((r for r in rows if r["variant"] == "sasrec"), None)
    if sasrec:
        print(f"  SASRec {sasrec['epoch_s']:.3f} s/epoch: {PYTORCH_SASREC_EPOCH_S / sasrec['epoch_s']:.1f}x the PyTorch "
              f"port's {PYTORCH_SASREC_EPOCH_S} s (goal <= {SASREC_EPOCH_GOAL_S:.2f} s: "
              f"{'met' if sasrec['epoch_s'] <= SASREC_EPOCH_GOAL_S else 'NOT met'})", flush=True)
    return rows


def input_phase(splits, epoch_s: float | None) -> dict[str, Any]:
    """Seconds to build one epoch of SASRec batches on the host, against a whole epoch."""
    from pipelines.models import build_model
    from pipelines.models.data import training_batches

    model = build_model("sasrec", splits.num_items, paper_params("sasrec", splits))
    began = time.perf_counter()
    batches = sum(1 for _ in training_batches(splits, model.training_spec(), PAPER_SETTINGS["sasrec"]["batch_size"],
                                               seed=1))
    input_s = time.perf_counter() - began
    share = input_s / epoch_s if epoch_s else None
    print(f"  input pipeline alone: {input_s:.3f} s for {batches} batches"
          + (f" = {share:.0%} of the {epoch_s:.3f} s epoch ({'host-bound' if share > 0.5 else 'device-bound'})"
             if share else ""), flush=True)
    return {"input_s": input_s, "batches": batches, "epoch_s": epoch_s, "input_share": share}


def reproduce_phase(splits, model: str, max_epochs: int, budget: float, target: float | None,
                    dataset: str) -> dict[str, Any]:
    from benchmarks.models.reproduce import evaluate_both
    from pipelines.models.training import TrainConfig, score_items, train_model

    settings = PAPER_SETTINGS[model]
    config = TrainConfig(epochs=max_epochs, batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
                         patience=max_epochs, time_budget_seconds=budget, eval_batch_size=1024, validation="sampled",
                         eval_every=5)
    began, reached = time.monotonic(), {}

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        ndcg = metrics.get("val_ndcg_at_10")
        if ndcg is not None:
            print(f"  {model} epoch {epoch}: val NDCG@10 {ndcg:.4f} at {time.monotonic() - began:.1f} s", flush=True)
            if target is not None and ndcg >= target and not reached:
                reached.update(epoch=epoch, seconds=time.monotonic() - began)

    result = train_model(model, splits.num_items, paper_params(model, splits), config, splits, on_epoch_end=on_epoch_end)
    test = evaluate_both(lambda batch: score_items(result.model, batch, 1024), splits)
    paper = published_for(dataset, model)  # the dataset's own published row, None when none is known
    published = dict(zip(("hr_at_10", "ndcg_at_10"), paper, strict=True)) if paper else {}
    row = {"model": model, "epochs": result.epochs_run, "stopped_reason": result.stopped_reason,
           "train_seconds": result.train_seconds, "test": test, "published": published,
           "reached_target": reached or None}
    print(f"  {model}: test NDCG@10 {test['sampled']['ndcg_at_10']:.4f} (published "
          f"{published['ndcg_at_10'] if published else 'unknown for this dataset'}) "
          f"after {result.epochs_run} epochs in {result.train_seconds:.0f} s ({result.stopped_reason})"
          + (f"; reached {target} at epoch {reached['epoch']}, {reached['seconds']:.1f} s" if reached else ""),
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--budget-seconds", type=float, default=560.0, help="the whole run, all phases")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget_seconds
    report: dict[str, Any] = {"dataset": args.dataset, "device": device_phase()}
    print(f"device: {report['device']}", flush=True)
    splits = benchmark_splits(args.dataset)
    print(f"{args.dataset}: {len(splits.users)} users, {splits.num_items} items", flush=True)
    report["epochs"] = epoch_phase(splits, started + 0.3 * args.budget_seconds)
    sasrec_epoch = next((r["epoch_s"] for r in report["epochs"] if r["variant"] == "sasrec"), None)
    report["input"] = input_phase(splits, sasrec_epoch)
    report["reproduce"] = [reproduce_phase(splits, "sasrec", 200, max(30.0, 0.55 * (deadline - time.monotonic())),
                                           TARGET_NDCG, dataset_name(args.dataset))]
    for model in ("gru4rec", "caser"):
        left = deadline - time.monotonic()
        if left < 30:
            print(f"  {model}: skipped, {left:.0f} s left", flush=True)
            continue
        report["reproduce"].append(reproduce_phase(splits, model, 200, 0.5 * left, None, dataset_name(args.dataset)))
    report["seconds"] = time.monotonic() - started
    from pipelines.config import load_config
    from pipelines.io import write_json_atomic

    out = load_config().layout.reports_dir / "bench-h200.json"
    write_json_atomic(out, report)
    print(json.dumps({"seconds": round(report["seconds"], 1), "saved": str(out)}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
