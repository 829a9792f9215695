"""One task of the nightly DAG in a process of its own, as ``make bench-scale`` measures it.

``python -m benchmarks.scale.stage STAGE DS STATE_DIR``: calls the task's function in
``pipelines.tasks`` (the one the DAG calls) with the layered config of the environment, reads what
an upstream task returned from ``STATE_DIR/<task>.json`` (the DAG passes it by XCom) and writes its
own summary there. The feature job is not run here: the harness spark-submits it, as the DAG does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.io import write_json_atomic

STAGES = ("validate_raw_events", "validate_features", "train_candidate", "evaluate_candidates",
          "promote_champion", "score_users", "publish_outputs")
MODEL = "gru4rec"
FORCE = {"mode": "force", "reason": "bench-scale: scoring needs a champion, whatever the random data scores",
         "who": "bench-scale"}


def run_stage(stage: str, ds: str, state: Path) -> dict:
    from pipelines import tasks

    upstream = lambda name: json.loads((state / f"{name}.json").read_text())  # noqa: E731
    if stage == "validate_raw_events":
        return tasks.validate_raw_events(ds)
    if stage == "validate_features":
        return tasks.validate_features(ds)
    if stage == "train_candidate":
        return tasks.train_candidate(ds, MODEL)
    if stage == "evaluate_candidates":
        return tasks.evaluate_candidates(ds, [upstream("train_candidate")])
    if stage == "promote_champion":
        return tasks.promote_champion(ds, upstream("evaluate_candidates"), control=FORCE)
    if stage == "score_users":
        return tasks.score_users(ds)
    if stage == "publish_outputs":
        return tasks.publish_outputs(ds)
    raise SystemExit(f"bench-scale stage {stage!r}: unknown; choose one of {', '.join(STAGES)}")


def main(argv: list[str] | None = None) -> int:
    stage, ds, state = argv or sys.argv[1:]
    summary = run_stage(stage, ds, Path(state))
    write_json_atomic(Path(state) / f"{stage}.json", summary)
    print(json.dumps(summary, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
