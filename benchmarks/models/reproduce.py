"""Reproduce the SASRec paper's comparison: popularity, Caser, GRU4Rec+ and SASRec on a public file.

``python -m benchmarks.models.reproduce --dataset ../shared/datasets/amazon-games/sequences.txt`` trains
each model with its paper's settings, selects the epoch on validation NDCG@10 under the paper's
protocol, and scores the test targets under both protocols: the paper's (target against 100 items
the user never had, at most 10,000 users) and full ranking against every item. Every model is one
MLflow run in the experiment ``reproduce-<dataset>``; the figures go to
``<reports_dir>/reproduce-<dataset>.json`` (rewritten after each model, so a partial run leaves a
partial report) and to stdout as one table. The report is keyed by model: rerunning some models
(``--models caser``) replaces their entries and keeps the others, each naming its MLflow run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from benchmarks.models.paper_benchmark import (
    DEFAULT_DATASET,
    MODEL_ORDER,
    PAPER_SETTINGS,
    benchmark_splits,
    dataset_name,
    paper_params,
    parse_budgets,
    parse_models,
    published_for,
)

log = logging.getLogger(__name__)
K = 10
TEST_SEED = 2018  # seeds the paper protocol's users and negatives on the test split


def evaluate_both(score_fn, splits) -> dict[str, dict[str, float]]:
    """Test metrics under the paper's sampled protocol and under full ranking."""
    from pipelines.models.metrics import evaluate_full_ranking, evaluate_sampled

    inputs, targets = splits.inputs("test"), splits.test_targets
    return {
        "sampled": evaluate_sampled(score_fn, inputs, targets, splits.history, seed=TEST_SEED, k=K,
                                    batch_size=1024, num_items=splits.num_items),
        "full": evaluate_full_ranking(score_fn, inputs, targets, k=K, batch_size=1024),
    }


def run_popularity(splits) -> dict[str, Any]:
    from pipelines.models.metrics import popularity_scorer, popularity_scores

    started = time.monotonic()
    scorer = popularity_scorer(popularity_scores(splits.train_sequences, splits.num_items))
    test = evaluate_both(scorer, splits)
    return {"test": test, "seconds": time.monotonic() - started, "epochs": 0, "seconds_per_epoch": 0.0,
            "best_epoch": 0, "stopped_reason": "no training", "params": {}}


def run_model(name: str, splits, args, budget: float | None) -> dict[str, Any]:
    """Train ``name`` with its paper settings, select on sampled validation, evaluate test."""
    import mlflow

    from pipelines.models.training import TrainConfig, score_items, train_model

    settings = PAPER_SETTINGS[name]
    params = paper_params(name, splits)
    config = TrainConfig(epochs=args.max_epochs, batch_size=settings["batch_size"],
                         learning_rate=settings["learning_rate"], patience=args.patience,
                         time_budget_seconds=budget, seed=args.seed, eval_batch_size=1024, k=K,
                         validation="sampled", eval_every=args.eval_every)
    mlflow.log_params({**params, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                       "max_epochs": config.epochs, "patience": config.patience, "eval_every": config.eval_every,
                       "time_budget_seconds": budget, "validation": config.validation})

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        shown = {key: round(value, 4) for key, value in metrics.items() if key != "epoch"}
        print(f"  {name} epoch {epoch}: {shown}", flush=True)

    result = train_model(name, splits.num_items, params, config, splits, on_epoch_end=on_epoch_end)
    test = evaluate_both(lambda batch: score_items(result.model, batch, 1024), splits)
    fit_seconds = [epoch["fit_seconds"] for epoch in result.history]
    return {"test": test, "seconds": result.train_seconds, "epochs": result.epochs_run,
            "seconds_per_epoch": sum(fit_seconds) / len(fit_seconds), "best_epoch": result.best_epoch,
            "best_val_ndcg_at_10": result.best_val_ndcg_at_10, "stopped_reason": result.stopped_reason,
            "params": params}


def _published(dataset: str, model: str) -> dict[str, float]:
    """``{hr_at_10, ndcg_at_10}`` published for the model on this dataset; {} when none is known."""
    row = published_for(dataset, model)
    return dict(zip((f"hr_at_{K}", f"ndcg_at_{K}"), row, strict=True)) if row else {}


def report_rows(name: str, outcome: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Flat rows (model, protocol, metric, value, published, seconds, epochs) of one model."""
    published = _published(dataset, name)
    return [
        {"model": name, "protocol": protocol, "metric": metric, "value": round(value, 4),
         "published": published.get(metric) if protocol == "sampled" else None,
         "seconds": round(outcome["seconds"], 1), "epochs": outcome["epochs"]}
        for protocol, metrics in outcome["test"].items()
        for metric, value in metrics.items()
    ]


def format_table(outcomes: dict[str, dict[str, Any]], dataset: str) -> str:
    header = (f"{'model':<11} {'HR@10':>7} {'paper':>7} {'NDCG@10':>8} {'paper':>7} | {'full HR':>8} "
              f"{'full NDCG':>9} {'full MRR':>8} | {'train s':>8} {'epochs':>6} {'best':>4} {'s/epoch':>7}")
    lines = ["paper protocol (100 never-seen negatives, <= 10,000 users) | full ranking | training", header,
             "-" * len(header)]
    for name, outcome in outcomes.items():
        sampled, full = outcome["test"]["sampled"], outcome["test"]["full"]
        paper = _published(dataset, name)
        hr_paper, ndcg_paper = (f"{paper[m]:.4f}" if m in paper else "-" for m in ("hr_at_10", "ndcg_at_10"))
        lines.append(
            f"{name:<11} {sampled['hr_at_10']:>7.4f} {hr_paper:>7} {sampled['ndcg_at_10']:>8.4f} "
            f"{ndcg_paper:>7} | {full['hr_at_10']:>8.4f} {full['ndcg_at_10']:>9.4f} {full['mrr']:>8.4f} | "
            f"{outcome['seconds']:>8.1f} {outcome['epochs']:>6} {outcome['best_epoch']:>4} "
            f"{outcome['seconds_per_epoch']:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import mlflow

    from pipelines.config import load_config
    from pipelines.io import write_json_atomic
    from pipelines.registry.store import configure_mlflow

    name = dataset_name(args.dataset)
    config = load_config({"mlflow": {"experiment": args.experiment or f"reproduce-{name}"}})
    experiment_id = configure_mlflow(config)
    splits = benchmark_splits(args.dataset)
    print(f"{args.dataset}: {len(splits.users)} users, {splits.num_items} items; "
          f"MLflow experiment {config.mlflow.experiment} at {config.tracking_uri}", flush=True)
    report_path = config.layout.reports_dir / f"reproduce-{name}.json"
    outcomes = _previous_outcomes(report_path, args.dataset)
    for model in args.models:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model}-{name}",
                              tags={"reproduce.dataset": name, "reproduce.model": model}) as run:
            outcome = run_popularity(splits) if model == "popularity" else run_model(
                model, splits, args, args.budgets[model])
            outcome["run_id"] = run.info.run_id
            _log_outcome(model, outcome, name)
        outcomes[model] = outcome
        outcomes = {key: outcomes[key] for key in MODEL_ORDER if key in outcomes}
        write_json_atomic(report_path, _report(args, name, splits, outcomes))
        print(format_table({model: outcome}, name).splitlines()[-1], flush=True)
    print(format_table(outcomes, name))
    if not any(published_for(name, model) for model in outcomes):
        print(f"(no published figures are known here for {name!r}: the paper columns are blank)")
    print(f"report: {report_path}")
    return 0


def _previous_outcomes(report_path, dataset) -> dict[str, dict[str, Any]]:
    """Models of an earlier report on the same file (kept unless rerun now); {} when there is none."""
    import json

    if not report_path.exists():
        return {}
    report = json.loads(report_path.read_text())
    return dict(report.get("models", {})) if report.get("path") == str(dataset) else {}


def _log_outcome(model: str, outcome: dict[str, Any], dataset: str) -> None:
    import mlflow

    for protocol, metrics in outcome["test"].items():
        mlflow.log_metrics({f"test_{protocol}_{metric}": value for metric, value in metrics.items()})
    mlflow.log_metrics({**{f"published_{metric}": value for metric, value in _published(dataset, model).items()},
                        "train_seconds": outcome["seconds"], "epochs_run": outcome["epochs"],
                        "seconds_per_epoch": outcome["seconds_per_epoch"], "best_epoch": outcome["best_epoch"]})
    mlflow.set_tag("reproduce.stopped_reason", outcome["stopped_reason"])


def _report(args, name: str, splits, outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    models = {model: {key: value for key, value in outcome.items() if key != "params"} | {
        "published": _published(name, model) or None,
        "params": outcome["params"]} for model, outcome in outcomes.items()}
    return {"dataset": name, "path": str(args.dataset), "num_users": int(len(splits.users)),
            "num_items": int(splits.num_items), "k": K,
            "protocols": {"sampled": "SASRec paper: 100 never-seen negatives, at most 10,000 users",
                          "full": "ranked against every item"},
            "results": [row for model, outcome in outcomes.items() for row in report_rows(model, outcome, name)],
            "models": models}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="'user item' per line file")
    parser.add_argument("--models", default=",".join(MODEL_ORDER), help="comma-separated, of " + ",".join(MODEL_ORDER))
    parser.add_argument("--max-epochs", type=int, default=200, help="most epochs per model (paper: 200)")
    parser.add_argument("--patience", type=int, default=20, help="epochs without a better validation NDCG@10")
    parser.add_argument("--eval-every", type=int, default=2, help="validate every this many epochs")
    parser.add_argument("--time-budget-seconds", default="900",
                        help="per model: one number for all, or e.g. sasrec=1200,gru4rec=720,caser=600")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default reproduce-<dataset>)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    try:
        args.models = parse_models(args.models)
        args.budgets = parse_budgets(args.time_budget_seconds, args.models)
    except ValueError as err:
        parser.error(str(err))
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
