"""How much better each campaign's audience is than a random one: measured on the day itself, held out.

The audiences of day D are chosen from everything up to D; whether they work shows the next day. To
measure it on the day, the run holds D out: each user's history is their sequence without the items
of D (the clean events of D, with repeats collapsed as the sequences are), the champion scores that
history, and each campaign's audience is chosen from it as ``audiences`` chooses the real one (the same
size, the likeliest users of the campaign's items). A member *responds* when on D they viewed, carted,
bought or clicked an ad of one of the campaign's items. Two audiences of the same size are measured
alongside: a random sample of the users with history (``scoring.lift_seed``) and the most active
users (longest history, the heuristic a marketer would use without a model). The lift is the
audience's response rate over each of theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.scoring.audiences import campaign_affinity

log = logging.getLogger(__name__)
RESPONSE_EVENT_TYPES = (C.PRODUCT_VIEW, C.ADD_TO_CART, C.PURCHASE, C.AD_CLICK)  # not impressions: those are ours


def holdout_histories(sequences: pa.Table, day_events: pa.Table, vocab: pa.Table,
                      sequence_event_types: list[str]) -> tuple[list[np.ndarray], dict[str, set[int]]]:
    """Each user's sequence without the day's items, and the items each user responded to on the day.

    ``sequences``: USER_KEY, ITEM_SEQ (the day's feature sequences); ``day_events``: the day's clean
    events (USER_KEY, EVENT_TIME, EVENT_ID, EVENT_TYPE, ITEM_ID).
    """
    index = dict(zip(vocab.column(C.ITEM_ID).to_pylist(), vocab.column(C.ITEM_IDX).to_pylist(), strict=True))
    events = day_events.filter(pc.is_valid(day_events.column(C.ITEM_ID))).sort_by(
        [(C.USER_KEY, "ascending"), (C.EVENT_TIME, "ascending"), (C.EVENT_ID, "ascending")])
    today: dict[str, list[int]] = {}
    responded: dict[str, set[int]] = {}
    for user, kind, item in zip(events.column(C.USER_KEY).to_pylist(), events.column(C.EVENT_TYPE).to_pylist(),
                                events.column(C.ITEM_ID).to_pylist(), strict=True):
        idx = index.get(item)
        if idx is None:
            continue
        if kind in sequence_event_types:
            items = today.setdefault(user, [])
            if not items or items[-1] != idx:  # repeats collapse, as in the sequences
                items.append(idx)
        if kind in RESPONSE_EVENT_TYPES:
            responded.setdefault(user, set()).add(idx)
    histories = []
    for user, sequence in zip(sequences.column(C.USER_KEY).to_pylist(), sequences.column(C.ITEM_SEQ).to_pylist(),
                              strict=True):
        drop = len(today.get(user, ()))
        histories.append(np.asarray(sequence[: len(sequence) - drop] if drop else sequence, np.int32))
    return histories, responded


def measure_lift(features_path, sequences: pa.Table, vocab: pa.Table, score_batch: Callable, max_len: int,
                 campaigns: list[str], campaign_matrix: np.ndarray, size: int, seed: int,
                 sequence_event_types: list[str], ds: str, batch_size: int = 512,
                 affinities: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> dict[str, Any]:
    """Response rates and lifts per campaign (see the module docstring); ``skipped`` says why when it cannot.

    The held-out histories' affinities come from ``score_batch`` in batches, or from ``affinities``
    (all inputs at once -> [users, campaigns]) where given: the Spark path (``scoring.distributed``).
    """
    if not campaigns:
        return {"ds": ds, "skipped": "no campaigns (or no champion) this day", "campaigns": {}}
    if not fs.is_dir(fs.join(features_path, lake.CLEAN_EVENTS)):
        return {"ds": ds, "skipped": f"{fs.join(features_path, lake.CLEAN_EVENTS)}: no clean events of the day to hold out "
                                     "(features written by an older feature job; rebuild them)", "campaigns": {}}
    day_events = fs.read_parquet(fs.join(features_path, lake.CLEAN_EVENTS),
                                 columns=[C.USER_KEY, C.EVENT_TIME, C.EVENT_ID, C.EVENT_TYPE, C.ITEM_ID])
    histories, responded = holdout_histories(sequences, day_events, vocab, sequence_event_types)
    users = np.flatnonzero([len(h) > 0 for h in histories])
    if len(users) < 2 * size:
        return {"ds": ds, "skipped": f"{len(users)} users with history before the day: too few for audiences of "
                                     f"{size} and a random one to compare with", "campaigns": {}}
    keys = np.asarray(sequences.column(C.USER_KEY).to_pylist(), dtype=object)[users]
    inputs = np.zeros((len(users), max_len), np.int32)
    for row, user in enumerate(users):
        tail = histories[user][-max_len:]
        inputs[row, max_len - len(tail):] = tail
    buckets = sequences.column(C.USER_BUCKET).to_numpy().astype(np.int32)[users]
    if affinities is not None:
        affinity = affinities({"items": inputs, "user": buckets})
    else:
        affinity = np.concatenate([
            campaign_affinity(score_batch({"items": inputs[s:s + batch_size], "user": buckets[s:s + batch_size]}),
                              campaign_matrix)
            for s in range(0, len(users), batch_size)])
    rng = np.random.default_rng(seed)
    random_audience = rng.choice(len(users), size, replace=False)
    lengths = np.array([len(histories[u]) for u in users])
    most_active = np.lexsort((keys.astype(str), -lengths))[:size]
    result = {}
    for j, campaign in enumerate(campaigns):
        items = set(np.flatnonzero(campaign_matrix[:, j]).tolist())
        hit = np.fromiter((bool(responded.get(k, set()) & items) for k in keys), bool, len(keys))
        chosen = np.lexsort((keys.astype(str), -affinity[:, j]))[:size]
        rates = {name: float(hit[audience].mean()) for name, audience in
                 (("model", chosen), ("random", random_audience), ("most_active", most_active))}
        result[campaign] = {
            "size": int(size), "model_rate": rates["model"], "random_rate": rates["random"],
            "most_active_rate": rates["most_active"], "base_rate": float(hit.mean()),
            "lift_over_random": rates["model"] / rates["random"] if rates["random"] else None,
            "lift_over_most_active": rates["model"] / rates["most_active"] if rates["most_active"] else None,
        }
    log.info("audience lift %s (held-out day, %s users with history): %s", ds, len(users),
             {c: round(r["lift_over_random"] or 0, 2) for c, r in result.items()})
    return {"ds": ds, "holdout_day": ds, "users_with_history": int(len(users)), "seed": seed, "campaigns": result}
