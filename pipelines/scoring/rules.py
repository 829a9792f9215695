"""Business rules on every user's item scores before the top-K (``scoring.rules`` and ``scoring.campaigns``).

Static rules decide once a night which items anyone may get (``plan_rules``), in this order; each
counts in ``RulePlan.removed`` only the items that no earlier rule removed:

1. ``not_in_catalog``, 2. ``out_of_stock``: with ``rules.catalog`` and a catalog for the day
   (``raw/catalog/dt=<ds>/``, see ``pipelines.scoring.catalog``), only its items, available and with stock > 0
   where it says so. Without a catalog for the day the rule is not applied, and a note says so.
3. ``excluded_category``: items of a category in ``rules.exclude_categories``.
4. ``price_range``: items whose catalog price is outside ``min_price..max_price``; an item without a
   catalog price is kept (a note counts them).

Then, per user (``ranked_top_k``): each campaign's ``boost`` is added to its items' scores;
ineligible items and, with ``rules.exclude_purchased``, the items the user bought are masked (a nan
score counts as masked too); the list is the user's best items by adjusted score with at most
``max_per_category`` of one known category (unknown categories are never capped), holding at least
``required`` of each such campaign's eligible items (the user's best ones, in place of the
lowest-ranked others; the cap holds for them too, and campaigns are served in config order while
the list has room). Lists are sorted by adjusted score, ties by item_idx, so a rerun writes the
same rows; a list the rules leave short is padded with item 0 and score nan, never with an
ineligible item.

``RuleCounts`` adds up over the batches: the (user, item) pairs masked because the user bought the
item, items the cap skipped, items in lists only because a campaign required them, and short and
empty lists. The run report shows it beside ``RulePlan.removed`` and ``RulePlan.notes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import columns as C

if TYPE_CHECKING:  # only for annotations
    from pipelines.config import CampaignRuleConfig, RulesConfig

from pipelines.scoring.catalog import AVAILABLE, STOCK

STATIC_RULES = ("not_in_catalog", "out_of_stock", "excluded_category", "price_range")  # order of application

@dataclass(frozen=True)
class ItemFacts:
    """What the rules know of each item_idx, from the vocab and the day's catalog (``item_facts``)."""

    item_ids: np.ndarray  # object [N+1], None at 0
    category: np.ndarray  # object [N+1] str or None: the catalog's where it has one, else the vocab's
    price: np.ndarray  # float64 [N+1], nan where unknown
    in_catalog: np.ndarray  # bool [N+1]; all True when there is no catalog
    in_stock: np.ndarray  # bool [N+1]; False only where the catalog says unavailable or stock <= 0
    from_catalog: bool = False  # the facts came from a catalog (the catalog rule applies only then)


def item_facts(vocab: pa.Table, catalog: pa.Table | None) -> ItemFacts:
    """Facts of the vocab's items (``item_id``, ``item_idx`` 1..N, ``category``), the catalog's where it has any."""
    n = vocab.num_rows
    rows = vocab.column(C.ITEM_IDX).to_numpy().astype(np.int64)
    if not np.array_equal(np.sort(rows), np.arange(1, n + 1)):
        raise ValueError(f"item vocab: {C.ITEM_IDX} must be 1..{n}, each once; rebuild the day's features")
    item_ids, category = np.full(n + 1, None, object), np.full(n + 1, None, object)
    item_ids[rows] = vocab.column(C.ITEM_ID).to_pylist()
    if C.CATEGORY in vocab.column_names:
        category[rows] = vocab.column(C.CATEGORY).to_pylist()
    if catalog is None:
        return ItemFacts(item_ids, category, np.full(n + 1, np.nan), np.ones(n + 1, bool), np.ones(n + 1, bool))
    listed = pc.index_in(pa.array(item_ids[1:].tolist(), pa.string()), value_set=catalog.column(C.ITEM_ID))
    # [N+1] each item's catalog row; padding and unlisted items point one past the end
    at = np.concatenate([[catalog.num_rows], listed.fill_null(catalog.num_rows).to_numpy()])

    def given(name: str, missing: Any, dtype) -> np.ndarray:  # [N+1] the catalog's value, `missing` where none
        if name not in catalog.column_names:
            return np.full(n + 1, missing, dtype)
        values = [missing if value is None else value for value in catalog.column(name).to_pylist()]
        return np.array(values + [missing], dtype)[at]

    listed_category = given(C.CATEGORY, None, object)
    has_category = np.array([value is not None for value in listed_category], bool)
    category[has_category] = listed_category[has_category]
    in_stock = given(AVAILABLE, True, bool) & (given(STOCK, 1, np.int64) > 0)
    in_stock[0] = False
    return ItemFacts(item_ids, category, given(C.PRICE, np.nan, np.float64), at < catalog.num_rows, in_stock,
                     from_catalog=True)


@dataclass(frozen=True)
class RulePlan:
    """The night's rules, resolved to item masks (see the module doc)."""

    eligible: np.ndarray  # bool [N+1]: items every user may get (static rules); [0] False
    removed: dict[str, int]  # STATIC_RULES -> items that rule removed and no earlier one had
    boost: np.ndarray  # float32 [N+1] added to the scores: the boosts of the campaigns holding the item
    required: list[tuple[str, np.ndarray, int]]  # (campaign, bool [N+1] its eligible items, slots), config order
    category_codes: np.ndarray  # int32 [N+1], -1 for an unknown category (never capped)
    max_per_category: int | None
    exclude_purchased: bool
    notes: list[str]  # what a person should know: rules not applied, items kept for want of a price, ...


def plan_rules(rules: RulesConfig, campaigns: dict[str, CampaignRuleConfig], facts: ItemFacts,
               campaign_names: list[str], campaign_matrix: np.ndarray) -> RulePlan:
    """The static rules applied in order, and the campaigns' boosts and required slots.

    ``campaign_matrix``: float32 [N+1, len(campaign_names)], 1 where the item is one of the campaign's
    (``pipelines.scoring.audiences.campaign_items``).
    """
    width = len(facts.item_ids)
    if campaign_matrix.shape != (width, len(campaign_names)):
        raise ValueError(f"campaign_matrix is {campaign_matrix.shape}, expected {(width, len(campaign_names))}")
    notes: list[str] = []
    drops = _static_drops(rules, facts, notes)  # rule -> bool [N+1] items it refuses, None when off
    eligible, removed = np.ones(width, bool), {}
    eligible[0] = False
    for rule in STATIC_RULES:
        gone = eligible & drops[rule] if drops[rule] is not None else np.zeros(width, bool)
        removed[rule] = int(gone.sum())
        eligible &= ~gone
    if drops["price_range"] is not None and (unpriced := int((eligible & np.isnan(facts.price)).sum())):
        notes.append(f"price_range: no catalog price for {unpriced} items; they are kept")
    boost, required = _campaign_rules(campaigns, campaign_names, campaign_matrix, eligible, notes)
    if not eligible.any():
        notes.append("every item was removed by the rules, so every list is empty; check scoring.rules and "
                     "the day's catalog")
    known = sorted({value for value in facts.category[1:] if value is not None})
    code = {value: number for number, value in enumerate(known)}
    codes = np.array([-1 if value is None else code[value] for value in facts.category], np.int32)
    codes[0] = -1
    return RulePlan(eligible, removed, boost, required, codes, rules.max_per_category, rules.exclude_purchased,
                    notes)


def _static_drops(rules: RulesConfig, facts: ItemFacts, notes: list[str]) -> dict[str, np.ndarray | None]:
    drops = dict.fromkeys(STATIC_RULES)
    if rules.catalog and facts.from_catalog:
        drops["not_in_catalog"], drops["out_of_stock"] = ~facts.in_catalog, ~facts.in_stock
    elif rules.catalog:
        notes.append("catalog: no catalog for this day; rule not applied")
    if rules.exclude_categories:
        excluded = set(rules.exclude_categories)
        drops["excluded_category"] = np.array([value in excluded for value in facts.category], bool)
        present = set(facts.category[1:].tolist())
        notes += [f"exclude_categories: no item has category {name!r}"
                  for name in dict.fromkeys(rules.exclude_categories) if name not in present]
    if rules.min_price is not None or rules.max_price is not None:
        lowest = -np.inf if rules.min_price is None else rules.min_price
        highest = np.inf if rules.max_price is None else rules.max_price
        drops["price_range"] = (facts.price < lowest) | (facts.price > highest)  # nan compares False: kept
    return drops


def _campaign_rules(campaigns: dict[str, CampaignRuleConfig], names: list[str], matrix: np.ndarray,
                    eligible: np.ndarray, notes: list[str]) -> tuple[np.ndarray, list]:
    boost, required = np.zeros(len(eligible), np.float32), []
    column = {name: j for j, name in enumerate(names)}
    for name, rule in campaigns.items():
        if name not in column:
            notes.append(f"campaigns: {name!r} showed no ads in the window (not in campaign_items); "
                         "its rule is ignored")
            continue
        items = matrix[:, column[name]] > 0
        items[0] = False
        boost[items] += np.float32(rule.boost)
        if rule.required:
            mine = items & eligible
            if int(mine.sum()) < rule.required:
                notes.append(f"campaigns: {name!r} requires {rule.required} items but only {int(mine.sum())} "
                             "of its items are eligible; lists hold those")
            if mine.any():
                required.append((name, mine, int(rule.required)))
    return boost, required


@dataclass
class RuleCounts:
    """What the per-user rules did, added up over batches (for the run report)."""

    users: int = 0
    purchased_removed: int = 0  # (user, item) pairs masked because the user bought the (eligible) item
    capped: int = 0  # items passed over, while a list had room, because of max_per_category
    required_added: int = 0  # items in lists only because a campaign required them
    short_lists: int = 0  # users given fewer than k items (empty lists included)
    empty_lists: int = 0  # users given no item at all

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in asdict(self).items()}


class _PoolRanOut(Exception):
    """A user's candidate pool ended before the list was complete: rank them on the full row."""


def ranked_top_k(score_batch, inputs: dict[str, np.ndarray], num_items: int, k: int, plan: RulePlan,
                 purchased: list[np.ndarray] | None, counts: RuleCounts,
                 batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(items int32 [n, k], scores float32 [n, k]): each user's list under ``plan`` (see the module doc).

    ``score_batch(inputs of up to batch_size rows) -> float32 [b, num_items + 1]``, as for
    ``pipelines.models.training.top_k_scored``; ``purchased``: each user's bought item_idx (or None).
    A short list ends with item 0 and score nan. Only the score batches are written to.
    """
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    if len(plan.eligible) != num_items + 1:
        raise ValueError(f"the rule plan covers {len(plan.eligible) - 1} items, the scores {num_items}; "
                         "plan the rules on the same feature partition's vocab")
    count = len(inputs["items"]) if "items" in inputs else len(next(iter(inputs.values())))
    if purchased is not None and len(purchased) != count:
        raise ValueError(f"purchased has {len(purchased)} users, inputs {count}")
    bought = _ragged(purchased) if plan.exclude_purchased and purchased is not None else None
    blocked = np.flatnonzero(~plan.eligible)  # columns masked for everyone (padding included)
    top_items, top_scores = np.zeros((count, k), np.int32), np.full((count, k), np.nan, np.float32)
    for start in range(0, count, batch_size):
        part = slice(start, min(start + batch_size, count))
        scores = np.asarray(score_batch({key: value[part] for key, value in inputs.items()}))  # [b, N+1]
        if scores.shape != (expected := (part.stop - part.start, num_items + 1)):
            raise ValueError(f"score_batch returned {scores.shape}, expected {expected}")
        if scores.dtype != np.float32 or not scores.flags.writeable:  # e.g. a broadcast popularity row
            scores = np.array(scores, np.float32)
        _adjust(scores, plan, blocked, bought, part, counts)
        top_items[part], top_scores[part] = _rank(scores, k, plan, counts)
    counts.users += count
    return top_items, top_scores


def _ragged(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(values int64 [total], offsets int64 [n + 1]) of per-user item lists."""
    lengths = np.array([len(items) for items in lists], np.int64)
    values = [np.asarray(items, np.int64).reshape(-1) for items in lists]
    return np.concatenate([np.zeros(0, np.int64), *values]), np.concatenate([[0], np.cumsum(lengths)])


def _adjust(scores: np.ndarray, plan: RulePlan, blocked: np.ndarray, bought, part: slice,
            counts: RuleCounts) -> None:
    """In place: boosts added; nan, ineligible and (per user) purchased items set to -inf."""
    if plan.boost.any():
        scores += plan.boost
    scores[np.isnan(scores)] = -np.inf
    scores[:, blocked] = -np.inf
    if bought is None:
        return
    values, offsets = bought
    rows = np.repeat(np.arange(part.stop - part.start), np.diff(offsets[part.start:part.stop + 1]))
    items = values[offsets[part.start]:offsets[part.stop]]
    inside = (items >= 1) & (items < scores.shape[1])
    rows, items = rows[inside], items[inside]
    pairs = np.unique(rows * scores.shape[1] + items)  # a user who bought an item twice counts once
    counts.purchased_removed += int(plan.eligible[pairs % scores.shape[1]].sum())
    scores[rows, items] = -np.inf


def _best(scores: np.ndarray, m: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) [b, m]: each row's m best columns by (score desc, column asc), in that order.

    Exact and fast on wide rows: the m-th largest of the row's block maxima (blocks of ``block``
    columns; by default 32 to 256, some 4m blocks a row) is a floor under its m-th best score, because m blocks each hold a score at or above it.
    So the m best, ties at the cut included, are among the few scores at or above that floor, in
    the few blocks whose maximum reaches it, and only those are sorted. A NaN is never among the
    best, as in the exhaustive path; a row with fewer than m scores at or above its floor (NaN
    maxima) takes that path.
    """
    b, width = scores.shape
    if m >= width or m == 0:
        return _best_exhaustive(scores, m)
    block = block or min(256, max(32, width // (4 * m)))
    whole = width // block
    if whole < 2 * m:  # too few blocks for the floor to prune: no gain
        return _best_exhaustive(scores, m)
    blocks = scores[:, :whole * block].reshape(b, whole, block)  # a view
    maxima = blocks.max(axis=2)  # [b, blocks]
    tail = scores[:, whole * block:]  # the last, shorter block
    every = np.concatenate([maxima, tail.max(axis=1, keepdims=True)], axis=1) if tail.shape[1] else maxima
    floor = np.partition(every, every.shape[1] - m, axis=1)[:, every.shape[1] - m]  # [b] m-th largest
    # the few blocks reaching the floor (and any holding a NaN, whose maximum says nothing)
    block_rows, block_numbers = np.nonzero(~(maxima < floor[:, None]))
    in_rows, in_columns = np.nonzero(blocks[block_rows, block_numbers] >= floor[block_rows, None])
    rows, columns = block_rows[in_rows], block_numbers[in_rows] * block + in_columns
    if tail.shape[1]:
        tail_rows, tail_columns = np.nonzero(tail >= floor[:, None])
        rows, columns = np.concatenate([rows, tail_rows]), np.concatenate([columns, tail_columns + whole * block])
    per_row = np.bincount(rows, minlength=b)
    if (per_row < m).any():  # NaN maxima: no floor for those rows
        sound = per_row >= m
        out_columns, out_values = np.zeros((b, m), np.int64), np.zeros((b, m), scores.dtype)
        out_columns[~sound], out_values[~sound] = _best_exhaustive(scores[~sound], m)
        if sound.any():
            out_columns[sound], out_values[sound] = _best(scores[sound], m, block)
        return out_columns, out_values
    values = scores[rows, columns]
    order = np.lexsort((columns, -values, rows))  # per row: score desc, column asc
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    pick = (starts[:, None] + np.arange(m)[None, :]).reshape(-1)  # each row's first m candidates
    chosen = order[pick]
    return columns[chosen].reshape(b, m), values[chosen].reshape(b, m)


def _best_exhaustive(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``_best`` over every column of every row (argpartition, then the ties at the cut)."""
    b, width = scores.shape
    if m >= width:
        columns = np.broadcast_to(np.arange(width), (b, width))
    else:
        columns = np.argpartition(-scores, m - 1, axis=1)[:, :m]  # [b, m] unordered
        kth = np.take_along_axis(scores, columns, axis=1).min(axis=1, keepdims=True)  # [b, 1] m-th best
        tied = np.flatnonzero((scores >= kth).sum(axis=1) > m)  # ties at the cut: keep the lowest columns
        if len(tied):
            above, at = scores[tied] > kth[tied], scores[tied] == kth[tied]
            room = m - above.sum(axis=1, keepdims=True)
            keep = above | (at & (np.cumsum(at, axis=1, dtype=np.int32) <= room))
            columns[tied] = np.nonzero(keep)[1].reshape(len(tied), m)  # exactly m a row, in column order
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.lexsort((columns, -values), axis=1)
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def _rank(scores: np.ndarray, k: int, plan: RulePlan, counts: RuleCounts) -> tuple[np.ndarray, np.ndarray]:
    """The batch's lists, [b, k] items and scores, 0 / nan past a short list's end."""
    b, width = scores.shape
    items, values = np.zeros((b, k), np.int32), np.full((b, k), np.nan, np.float32)
    if plan.max_per_category is None and not plan.required:  # plain top-k: vectorised
        columns, best = _best(scores, min(k, width))
        valid = best > -np.inf  # a prefix of each row
        items[:, :columns.shape[1]] = np.where(valid, columns, 0)
        values[:, :columns.shape[1]] = np.where(valid, best, np.nan)
        lengths = valid.sum(axis=1)
    else:
        lengths = np.zeros(b, np.int64)
        for row, chosen in enumerate(_lists(scores, k, plan, counts)):
            chosen.sort(key=lambda item: (-scores[row, item], item))
            items[row, :len(chosen)], values[row, :len(chosen)] = chosen, scores[row, chosen]
            lengths[row] = len(chosen)
    counts.short_lists += int((lengths < k).sum())
    counts.empty_lists += int((lengths == 0).sum())
    return items, values


def _lists(scores: np.ndarray, k: int, plan: RulePlan, counts: RuleCounts):
    """Each row's chosen items (unordered) under the cap and the required slots, from candidate pools."""
    width = scores.shape[1]
    main = _pools(scores, np.arange(width), min(width, 4 * k + sum(s for _, _, s in plan.required)))
    campaigns = [_pools(scores, np.flatnonzero(mask), 4 * slots) for _, mask, slots in plan.required]
    for row in range(len(scores)):
        try:
            chosen, capped, added = _choose(main[row], [pools[row] for pools in campaigns], k, plan)
        except _PoolRanOut:  # the cap or the slots reach past the pools: this user on the full row
            order = _pools(scores[row:row + 1], np.arange(width), width)[0][0]
            full = [([item for item in order if mask[item]], True) for _, mask, _ in plan.required]
            chosen, capped, added = _choose((order, True), full, k, plan)
        counts.capped += capped
        counts.required_added += added
        yield chosen


def _pools(scores: np.ndarray, columns: np.ndarray, m: int) -> list[tuple[list[int], bool]]:
    """Per row: its best items among ``columns`` (finite scores only, best first), and whether that is all."""
    if not len(columns):
        return [([], True)] * len(scores)
    picked, best = _best(scores[:, columns] if len(columns) < scores.shape[1] else scores, min(m, len(columns)))
    valid = (best > -np.inf).sum(axis=1)
    complete = (picked.shape[1] == len(columns)) | (valid < picked.shape[1])
    return [(columns[picked[row, :valid[row]]].tolist(), bool(complete[row])) for row in range(len(scores))]


def _choose(main: tuple[list[int], bool], campaigns: list[tuple[list[int], bool]], k: int,
            plan: RulePlan) -> tuple[list[int], int, int]:
    """(chosen items, items the cap skipped, items there only because required): reserve, then fill."""
    chosen: list[int] = []
    per_category: dict[int, int] = {}
    for (pool, complete), (_, mask, slots) in zip(campaigns, plan.required, strict=True):
        need = slots - sum(bool(mask[item]) for item in chosen)  # an item may be in several campaigns
        if need > 0:
            _take(pool, complete, chosen, per_category, plan, min(k, len(chosen) + need))
    reserved = list(chosen)
    capped = _take(*main, chosen, per_category, plan, k)
    if not reserved:
        return chosen, capped, 0
    plain: list[int] = []
    _take(*main, plain, {}, plan, k)
    return chosen, capped, len(set(reserved) - set(plain))


def _take(pool: list[int], complete: bool, chosen: list[int], per_category: dict[int, int], plan: RulePlan,
          limit: int) -> int:
    """Append the pool's items not chosen yet, within the cap, until ``limit``; returns the items the cap
    skipped meanwhile. Raises _PoolRanOut when the pool ends first and is not all of the row's items."""
    skipped, taken, cap = 0, set(chosen), plan.max_per_category
    for item in pool:
        if len(chosen) >= limit:
            return skipped
        if item in taken:
            continue
        code = int(plan.category_codes[item])
        if cap is not None and code >= 0 and per_category.get(code, 0) >= cap:
            skipped += 1
            continue
        chosen.append(item)
        taken.add(item)
        per_category[code] = per_category.get(code, 0) + 1
    if len(chosen) < limit and not complete:
        raise _PoolRanOut
    return skipped
