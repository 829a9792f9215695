"""Business rules on the scores before the top-K: one test a rule on six items, the catalog reader, and a
property (Hypothesis) that every list keeps every rule whatever the scores, rules and campaigns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import columns as C
from pipelines.config import CampaignRuleConfig, RulesConfig
from pipelines.scoring.catalog import CatalogError, read_catalog
from pipelines.scoring.rules import (
    STATIC_RULES,
    RuleCounts,
    _best,
    _best_exhaustive,
    item_facts,
    plan_rules,
    ranked_top_k,
)

CATEGORIES = ["a", "a", "a", "b", "b", None]  # items 1..6
DESC = [0, 6, 5, 4, 3, 2, 1]  # item 1 best ... item 6 worst (column 0: padding)
ASC = [0, 1, 2, 3, 4, 5, 6]
NAN = float("nan")


def _vocab(categories: list) -> pa.Table:
    n = len(categories)
    return pa.table({C.ITEM_ID: [f"i{i}" for i in range(1, n + 1)], C.ITEM_IDX: pa.array(range(1, n + 1), pa.int32()),
                     C.CATEGORY: pa.array(categories, pa.string())})


def _rules(**changes) -> RulesConfig:
    return RulesConfig(**({"exclude_purchased": True, "catalog": True, "exclude_categories": []} | changes))


def _catalog(**columns) -> pa.Table:
    return pa.table({C.ITEM_ID: [f"i{i}" for i in range(1, len(next(iter(columns.values()))) + 1)], **columns})


def _plan(rules: RulesConfig | None = None, catalog: pa.Table | None = None, categories: list = CATEGORIES,
          campaigns: dict | None = None, members: dict[str, list[int]] | None = None):
    names = sorted(members or {})
    matrix = np.zeros((len(categories) + 1, len(names)), np.float32)
    for j, name in enumerate(names):
        matrix[members[name], j] = 1.0
    return plan_rules(rules or _rules(), campaigns or {}, item_facts(_vocab(categories), catalog), names, matrix)


def _top(rows, k: int, plan, purchased=None, batch_size: int = 512):
    scores = np.asarray(rows, np.float32)  # [users, N+1]
    counts = RuleCounts()
    inputs = {"items": np.arange(len(scores))[:, None]}  # the user's row, as a model's input would be
    items, values = ranked_top_k(lambda batch: scores[batch["items"][:, 0]], inputs, scores.shape[1] - 1, k, plan,
                                 purchased, counts, batch_size=batch_size)
    assert items.dtype == np.int32 and values.dtype == np.float32 and items.shape == (len(scores), k)
    return items.tolist(), values, counts


def test_purchased_items_are_excluded_and_counted_once_per_user_and_item():
    purchased = [np.array([1, 3]), np.array([6, 6])]
    items, _, counts = _top([DESC, ASC], 3, _plan(), purchased)
    assert items == [[2, 4, 5], [5, 4, 3]]
    assert counts.purchased_removed == 3 and counts.users == 2 and counts.short_lists == 0
    assert [p.tolist() for p in purchased] == [[1, 3], [6, 6]]  # the caller's arrays are untouched
    items, _, counts = _top([DESC, ASC], 3, _plan(_rules(exclude_purchased=False)), purchased)
    assert items == [[1, 2, 3], [6, 5, 4]] and counts.purchased_removed == 0


def test_catalog_keeps_its_items_available_and_in_stock_only():
    catalog = _catalog(available=[True, False, None, True, True], stock=[3, 5, 0, 0, None])  # i6 unlisted
    plan = _plan(catalog=catalog)
    assert plan.removed == {"not_in_catalog": 1, "out_of_stock": 3, "excluded_category": 0, "price_range": 0}
    items, values, counts = _top([DESC], 3, plan)
    assert items == [[1, 5, 0]] and values[0, :2].tolist() == [6, 2] and np.isnan(values[0, 2])
    assert counts.short_lists == 1 and counts.empty_lists == 0
    assert not any(_plan(_rules(catalog=False), catalog=catalog).removed.values())  # rule off: catalog ignored


def test_without_a_catalog_the_catalog_rule_is_noted_and_removes_nothing():
    plan = _plan(catalog=None)
    assert plan.removed == dict.fromkeys(STATIC_RULES, 0)
    assert "catalog: no catalog for this day; rule not applied" in plan.notes
    assert _top([DESC], 3, plan)[0] == [[1, 2, 3]]
    assert not _plan(_rules(catalog=False)).notes  # rule off: nothing to say


def test_excluded_categories_are_never_recommended_and_unknown_names_are_noted():
    plan = _plan(_rules(exclude_categories=["a", "nope"]))
    assert plan.removed["excluded_category"] == 3
    assert "exclude_categories: no item has category 'nope'" in plan.notes
    assert _top([DESC], 3, plan)[0] == [[4, 5, 6]]  # item 6 has no category: never excluded


def test_each_rule_counts_only_what_no_earlier_rule_removed():
    catalog = _catalog(available=[True] * 6, stock=[1, 1, 1, 0, 1, 1])  # i4: category b, out of stock
    plan = _plan(_rules(exclude_categories=["b"]), catalog=catalog)
    assert plan.removed == {"not_in_catalog": 0, "out_of_stock": 1, "excluded_category": 1, "price_range": 0}
    assert list(plan.removed) == list(STATIC_RULES)
    assert plan.eligible.tolist() == [False, True, True, True, False, False, True]


def test_price_range_removes_known_prices_outside_it_and_keeps_unknown_ones():
    catalog = _catalog(price=[10.0, 50.0, None, 5.0, 20.0, None])
    plan = _plan(_rules(min_price=8.0, max_price=30.0), catalog=catalog)
    assert plan.removed["price_range"] == 2
    assert "price_range: no catalog price for 2 items; they are kept" in plan.notes
    assert _top([DESC], 4, plan)[0] == [[1, 3, 5, 6]]


def test_max_per_category_skips_items_of_a_full_category():
    items, _, counts = _top([DESC], 3, _plan(_rules(max_per_category=1)))
    assert items == [[1, 4, 6]] and counts.capped == 3  # 2 and 3 (a), 5 (b); 6 has no category
    items, _, counts = _top([DESC], 6, _plan(_rules(max_per_category=2)))
    assert items == [[1, 2, 4, 5, 6, 0]] and counts.capped == 1 and counts.short_lists == 1


def test_a_campaign_boost_raises_its_items():
    plan = _plan(campaigns={"sale": CampaignRuleConfig(boost=2.5)}, members={"sale": [5, 6]})
    items, values, _ = _top([DESC], 4, plan)
    assert items == [[1, 2, 5, 3]] and values.tolist() == [[6.0, 5.0, 4.5, 4.0]]
    assert _top([DESC], 4, _plan())[0] == [[1, 2, 3, 4]]


def test_required_slots_replace_the_lowest_items_and_the_list_stays_sorted():
    plan = _plan(campaigns={"sale": CampaignRuleConfig(required=2), "gone": CampaignRuleConfig(boost=1.0)},
                 members={"sale": [5, 6]})
    assert "showed no ads" in " ".join(plan.notes)  # a configured campaign absent from the window
    items, values, counts = _top([DESC, ASC], 3, plan)
    assert items == [[1, 5, 6], [6, 5, 4]] and values[0].tolist() == [6.0, 2.0, 1.0]
    assert counts.required_added == 2  # the second user had them anyway


def test_a_user_the_rules_leave_nothing_gets_an_empty_row():
    plan = _plan(_rules(exclude_categories=["a"]))
    items, values, counts = _top([DESC, DESC], 2, plan, [np.array([4, 5, 6]), np.array([], np.int64)])
    assert items == [[0, 0], [4, 5]] and np.isnan(values[0]).all()
    assert counts.empty_lists == 1 and counts.short_lists == 1 and counts.users == 2


def test_k_above_the_eligible_items_pads_and_never_fills_with_ineligible_items():
    items, values, counts = _top([DESC, ASC], 3, _plan(_rules(exclude_categories=["a", "b"])))
    assert items == [[6, 0, 0], [6, 0, 0]] and np.isnan(values[:, 1:]).all()
    assert counts.short_lists == 2 and counts.empty_lists == 0
    assert _top([DESC], 8, _plan())[0] == [[1, 2, 3, 4, 5, 6, 0, 0]]  # k above the catalogue


def test_ties_are_broken_by_item_idx_also_at_the_candidate_pool_cut():
    assert _top([[0] + [1.0] * 6], 3, _plan())[0] == [[1, 2, 3]]
    row = [0] + [1.0] * 19 + [2.0]  # 20 items: item 20 first, then the lowest of the tied
    assert _top([row], 3, _plan(categories=[None] * 20))[0] == [[20, 1, 2]]
    plan = _plan(_rules(max_per_category=1), categories=["a"] * 19 + ["b"],
                 campaigns={"late": CampaignRuleConfig(required=1)}, members={"late": [17, 18, 19]})
    items, _, counts = _top([[0] + [1.0] * 20], 3, plan)  # past the pool: the full row decides
    assert items == [[17, 20, 0]] and counts.capped == 18  # 17 took a's one slot; only 20 (b) still fits
    flat = _plan(categories=[None] * 20, campaigns={"late": CampaignRuleConfig(required=1)},
                 members={"late": [18, 19]})
    assert _top([[0] + [1.0] * 20], 2, flat)[0] == [[1, 18]]


def test_a_read_only_score_batch_is_copied_not_written():
    popularity = np.asarray(DESC, np.float32)
    counts = RuleCounts()
    items, _ = ranked_top_k(lambda batch: np.broadcast_to(popularity, (len(batch["items"]), 7)),
                            {"items": np.zeros((3, 2), np.int32)}, 6, 2, _plan(), None, counts, batch_size=2)
    assert items.tolist() == [[1, 2]] * 3 and popularity.tolist() == DESC and counts.users == 3


def test_read_catalog_reads_csv_parquet_and_jsonl_files_of_the_folder(tmp_path):
    assert read_catalog(tmp_path / "absent") is None and read_catalog(tmp_path) is None
    (tmp_path / "a.csv").write_text("item_id,available,stock,price,extra\nNA,true,3,9.5,x\nb,FALSE,,,y\n")
    pq.write_table(pa.table({C.ITEM_ID: [7], "stock": [0]}), tmp_path / "b.parquet")
    (tmp_path / "c.jsonl").write_text('{"item_id": "c", "category": "shoes", "price": 2}\n\n{"item_id": 8}\n')
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("not a catalog")
    table = read_catalog(tmp_path)
    assert table.column_names == [C.ITEM_ID, "available", "stock", C.PRICE, C.CATEGORY]
    assert table.schema.field("stock").type == pa.int64() and table.schema.field(C.PRICE).type == pa.float64()
    assert table.to_pylist() == [
        {C.ITEM_ID: "NA", "available": True, "stock": 3, C.PRICE: 9.5, C.CATEGORY: None},
        {C.ITEM_ID: "b", "available": False, "stock": None, C.PRICE: None, C.CATEGORY: None},
        {C.ITEM_ID: "7", "available": None, "stock": 0, C.PRICE: None, C.CATEGORY: None},
        {C.ITEM_ID: "c", "available": None, "stock": None, C.PRICE: 2.0, C.CATEGORY: "shoes"},
        {C.ITEM_ID: "8", "available": None, "stock": None, C.PRICE: None, C.CATEGORY: None}]
    facts = item_facts(_vocab(["x", "x", "y"]).set_column(0, C.ITEM_ID, pa.array(["b", "c", "zz"])), table)
    assert facts.in_catalog.tolist() == [False, True, True, False]
    assert facts.in_stock.tolist() == [False, False, True, True]  # b: unavailable; zz: not listed, not refused
    assert facts.category.tolist() == [None, "x", "shoes", "y"] and np.isnan(facts.price[[0, 1, 3]]).all()


@pytest.mark.parametrize(("files", "named"), [
    ({"items.csv": "id,price\n1,2\n"}, ["items.csv", "item_id"]),
    ({"items.csv": "item_id,price\n,3\n"}, ["items.csv", "item_id", "line 2"]),
    ({"items.jsonl": '{"item_id": "a", "price": 1}\n{"item_id": "b", "price": "cheap"}\n'},
     ["items.jsonl", "price", "line 2", "'cheap'"]),
    ({"items.csv": "item_id,available\na,yes\n"}, ["items.csv", "available", "line 2", "'yes'"]),
    ({"items.csv": "item_id,stock\na,1.5\n"}, ["items.csv", "stock", "whole number"]),
    ({"a.csv": "item_id\nx\nsame\n", "b.jsonl": '{"item_id": "same"}\n'},
     ["b.jsonl line 1", "'same'", "a.csv line 3"]),
    ({"items.jsonl": '{"item_id": "a"}\n[1, 2]\n'}, ["items.jsonl", "line 2"]),
])
def test_read_catalog_refuses_a_bad_file_naming_the_file_the_column_and_the_fix(tmp_path, files, named):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(CatalogError) as refused:
        read_catalog(tmp_path)
    message = str(refused.value)
    assert all(part in message for part in named), message
    assert "rerun" in message


# -- the property: whatever the scores, rules and campaigns, every list keeps every rule ----------------------

CATEGORY_NAMES = ["a", "b", "c"]


@st.composite
def situations(draw):
    n = draw(st.integers(1, 14))
    users = draw(st.integers(1, 4))
    return {
        "scores": draw(st.lists(st.lists(st.integers(0, 4), min_size=n, max_size=n),  # small: many ties
                                min_size=users, max_size=users)),
        "categories": draw(st.lists(st.sampled_from([*CATEGORY_NAMES, None]), min_size=n, max_size=n)),
        "listing": draw(st.lists(st.sampled_from(["absent", "in", "unavailable", "no stock"]),
                                 min_size=n, max_size=n)),
        "with_catalog": draw(st.booleans()),
        "excluded": draw(st.lists(st.sampled_from(CATEGORY_NAMES), max_size=2, unique=True)),
        "purchased": draw(st.lists(st.lists(st.integers(1, n), max_size=4), min_size=users, max_size=users)),
        "cap": draw(st.none() | st.integers(1, 3)),
        "campaign": draw(st.lists(st.integers(1, n), max_size=n, unique=True)),
        "boost": draw(st.sampled_from([0.0, 1.5])),
        "required": draw(st.integers(0, 3)),
        "k": draw(st.integers(1, n + 2)),
        "batch_size": draw(st.integers(1, 3)),
    }


def _expected_lists(s: dict, allowed: np.ndarray, adjusted: np.ndarray) -> list[list[int]]:
    """The documented rules on the full row, without pools: the campaign's best items first, then the rest."""
    lists = []
    for row, scores in enumerate(adjusted):
        order = sorted((i for i in range(1, len(scores)) if allowed[row, i]), key=lambda i: (-scores[i], i))
        chosen = _greedy([i for i in order if i in s["campaign"]], [], min(s["required"], s["k"]), s)
        chosen = sorted(_greedy(order, chosen, s["k"], s), key=lambda i: (-scores[i], i))
        lists.append(chosen + [0] * (s["k"] - len(chosen)))
    return lists


def _greedy(order: list[int], chosen: list[int], limit: int, s: dict) -> list[int]:
    """``chosen`` and then the first items of ``order`` that the cap lets in, up to ``limit`` items."""
    chosen = list(chosen)
    for item in order:
        category = s["categories"][item - 1]
        full = (s["cap"] is not None and category is not None
                and sum(s["categories"][i - 1] == category for i in chosen) >= s["cap"])
        if len(chosen) < limit and item not in chosen and not full:
            chosen.append(item)
    return chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_every_list_keeps_every_rule_whatever_the_scores_and_rules(s):
    n, users, k = len(s["categories"]), len(s["scores"]), s["k"]
    listed = [i for i, state in enumerate(s["listing"], 1) if state != "absent"]
    catalog = pa.table({C.ITEM_ID: pa.array([f"i{i}" for i in listed], pa.string()),
                        "available": pa.array([s["listing"][i - 1] != "unavailable" for i in listed], pa.bool_()),
                        "stock": pa.array([0 if s["listing"][i - 1] == "no stock" else 2 for i in listed],
                                          pa.int64())})
    plan = _plan(_rules(exclude_categories=s["excluded"], max_per_category=s["cap"]),
                 catalog=catalog if s["with_catalog"] else None, categories=s["categories"],
                 campaigns={"promo": CampaignRuleConfig(boost=s["boost"], required=s["required"])},
                 members={"promo": s["campaign"]})
    static = np.array([False] + [s["categories"][i - 1] not in s["excluded"]
                                 and (not s["with_catalog"] or s["listing"][i - 1] == "in")
                                 for i in range(1, n + 1)])
    allowed = np.tile(static, (users, 1))
    for row, bought in enumerate(s["purchased"]):
        allowed[row, bought] = False
    raw = np.array([[0] + row for row in s["scores"]], np.float32)
    adjusted = raw + np.float32(s["boost"]) * np.isin(np.arange(n + 1), s["campaign"])
    items, values, counts = _top(raw, k, plan, [np.array(p, np.int64) for p in s["purchased"]], s["batch_size"])
    for row, got in enumerate(items):
        length = sum(item > 0 for item in got)
        chosen = got[:length]
        assert got[length:] == [0] * (k - length) and np.isnan(values[row, length:]).all()  # padding last
        assert len(set(chosen)) == length and all(allowed[row, item] for item in chosen)
        assert values[row, :length].tolist() == adjusted[row, chosen].tolist()
        assert chosen == sorted(chosen, key=lambda i: (-adjusted[row, i], i))
        per_category = [s["categories"][i - 1] for i in chosen if s["categories"][i - 1] is not None]
        assert s["cap"] is None or all(per_category.count(c) <= s["cap"] for c in per_category)
        room = [s["categories"][i - 1] for i in range(1, n + 1) if allowed[row, i]]
        capacity = room.count(None) + sum(min(room.count(c), s["cap"] or n) for c in CATEGORY_NAMES)
        assert length == min(k, capacity)
        if s["cap"] is None:
            promo = sum(i in s["campaign"] for i in chosen)
            assert promo >= min(s["required"], k, sum(allowed[row, i] for i in s["campaign"]))
    assert items == _expected_lists(s, allowed, adjusted)
    assert counts.short_lists == sum(row[-1] == 0 for row in items) and counts.users == users
    assert counts.empty_lists == sum(row[0] == 0 for row in items)


@settings(max_examples=300, deadline=None)
@given(rows=st.integers(1, 6), width=st.integers(2, 400), m=st.integers(1, 12), block=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1), levels=st.integers(1, 50), holes=st.sampled_from([0.0, 0.1, 0.9]),
       nans=st.sampled_from([0.0, 0.01, 0.5]))
def test_the_block_floor_picks_exactly_what_sorting_every_column_picks(rows, width, m, block, seed, levels, holes,
                                                                       nans):
    """Any scores (few distinct values, so ties at the cut; -inf for ruled-out items; NaN), any block size."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (rows, width)).astype(np.float32)
    scores[rng.random((rows, width)) < holes] = -np.inf
    scores[rng.random((rows, width)) < nans] = np.nan
    m = min(m, width)
    expected_columns, expected_values = _best_exhaustive(scores, m)
    columns, values = _best(scores, m, block)
    assert columns.tolist() == expected_columns.tolist()
    np.testing.assert_array_equal(values, expected_values)
