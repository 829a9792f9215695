"""Time training epochs of each model on the benchmark file, side by side, and print throughput.

``python -m benchmarks.models.bench_models`` trains each model with its paper settings for ``--epochs``
epochs in one process and prints, per model: the first epoch (which includes tracing/compiling),
the fastest later epoch in wall-clock and in process CPU seconds (steadier on a shared machine),
training rows per second (user sequences; sliding windows for Caser) and
the validation HR@10 / NDCG@10 (paper protocol) reached. ``--baseline`` adds the straightforward
SASRec (Keras' MultiHeadAttention, one step per compiled call) for a before/after comparison.

The same script is the GPU benchmark: ``KERAS_BACKEND=jax python -m benchmarks.models.bench_models
--mixed-precision`` imports no TensorFlow (batches and negatives come from the numpy pipeline),
so it runs on a host with JAX and the Keras wheel only. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks.models.paper_benchmark import DEFAULT_DATASET, PAPER_SETTINGS, benchmark_splits, paper_params

VARIANTS = {  # name -> (model, param overrides, TrainConfig overrides)
    "sasrec": ("sasrec", {}, {}),
    "gru4rec": ("gru4rec", {}, {}),
    "caser": ("caser", {}, {}),
    "sasrec-baseline": ("sasrec", {"attention": "keras"}, {"steps_per_execution": 1}),
}


def bench_variant(variant: str, splits, epochs: int, jit_compile) -> dict:
    """Train ``variant`` for ``epochs`` epochs (validating after the last) and time each epoch."""
    from pipelines.models import build_model
    from pipelines.models.data import training_arrays
    from pipelines.models.training import TrainConfig, train_model

    name, param_overrides, config_overrides = VARIANTS[variant]
    params = {**paper_params(name, splits), **param_overrides}
    settings = PAPER_SETTINGS[name]
    config = TrainConfig(**{"epochs": epochs, "batch_size": settings["batch_size"],
                            "learning_rate": settings["learning_rate"], "patience": epochs + 1,
                            "time_budget_seconds": None, "eval_batch_size": 1024, "validation": "sampled",
                            "eval_every": epochs, "jit_compile": jit_compile, **config_overrides})
    rows = len(training_arrays(splits, build_model(name, splits.num_items, params).training_spec())["items"])
    cpu = [time.process_time()]  # process CPU seconds at each epoch end: robust to a busy shared machine
    result = train_model(name, splits.num_items, params, config, splits,
                         on_epoch_end=lambda epoch, metrics: cpu.append(time.process_time()))
    fit = [epoch["fit_seconds"] for epoch in result.history]
    steady = min(fit[1:] or fit)  # epochs after the first: no tracing or compiling
    cpu_epochs = [after - before for before, after in zip(cpu, cpu[1:], strict=False)]  # the last validates
    last = result.history[-1]
    return {"variant": variant, "rows": rows, "first_epoch_s": fit[0], "epoch_s": steady,
            "epoch_cpu_s": min(cpu_epochs[1:-1] or cpu_epochs), "rows_per_s": rows / steady,
            "val_hr_at_10": last["val_hr_at_10"], "val_ndcg_at_10": last["val_ndcg_at_10"],
            "eval_s": last["eval_seconds"]}


def format_table(results: list[dict], header_note: str) -> str:
    header = (f"{'model':<16} {'rows':>7} {'1st epoch s':>11} {'epoch s':>8} {'epoch cpu s':>11} {'rows/s':>8} "
              f"{'val HR@10':>9} {'val NDCG@10':>11} {'eval s':>6}")
    lines = [header_note, header, "-" * len(header)]
    lines += [f"{r['variant']:<16} {r['rows']:>7} {r['first_epoch_s']:>11.1f} {r['epoch_s']:>8.1f} "
              f"{r['epoch_cpu_s']:>11.1f} {r['rows_per_s']:>8.0f} {r['val_hr_at_10']:>9.4f} "
              f"{r['val_ndcg_at_10']:>11.4f} {r['eval_s']:>6.1f}"
              for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import keras

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.precision)
    splits = benchmark_splits(args.dataset)
    note = (f"{args.dataset}: {len(splits.users)} users, {splits.num_items} items; backend "
            f"{keras.backend.backend()}, policy {keras.mixed_precision.global_policy().name}, "
            f"{args.epochs} epochs each; {_device_summary()}")
    print(note, flush=True)
    results = []
    for variant in args.models:
        began = time.monotonic()
        results.append(bench_variant(variant, splits, args.epochs, args.jit_compile))
        print(format_table(results[-1:], "").splitlines()[-1], f"({time.monotonic() - began:.0f}s)", flush=True)
    print(format_table(results, note))
    if keras.backend.backend() != "tensorflow" and "tensorflow" in sys.modules:
        print("warning: TensorFlow was imported under a non-TensorFlow backend", file=sys.stderr)
    return 0


def _device_summary() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return f"devices {[str(device) for device in jax.devices()]}"
    return f"{os.cpu_count()} CPU cores visible"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models.bench_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="'user item' per line file")
    parser.add_argument("--models", default="sasrec,gru4rec,caser", help=f"comma-separated, of {sorted(VARIANTS)}")
    parser.add_argument("--baseline", action="store_true", help="also time the straightforward SASRec")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per model (the first compiles, the last validates: 3 leaves one clean)")
    parser.add_argument("--mixed-precision", action="store_true", help="train under --precision")
    parser.add_argument("--precision", default="mixed_bfloat16", choices=["mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.baseline and "sasrec-baseline" not in args.models:
        args.models.append("sasrec-baseline")
    unknown = sorted(set(args.models) - set(VARIANTS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(VARIANTS)}")
    args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    return args


if __name__ == "__main__":
    sys.exit(main())
