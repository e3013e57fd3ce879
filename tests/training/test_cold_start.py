"""Cold-start items: the split keeps new items out of everything but the test targets, and the
metrics score them apart (ID-only models cannot rank them; side information can)."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from training.cold_start import cold_start_metrics, cold_start_split, load_cold_start_split, temporal_cold_items
from training.data import UserSequence, temporal_split
from training.loo import leave_one_out_split
from training.models.sasrec import SASRecConfig
from training.train import train_model

# More items per category than the cutoff (20): a model that only knows the category cannot put
# all of them in the top 20, and an item scored below its category falls out of it.
N_CATEGORIES, PER_CATEGORY = 4, 25


def category_rows(n_users: int = 300, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Users stay in one category and walk its ring of items (item ``c * PER_CATEGORY + j + 1``),
    half the time jumping anywhere inside it: the category predicts the next item's neighbourhood."""
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        category, j = rng.randrange(N_CATEGORIES), rng.randrange(PER_CATEGORY)
        items = []
        for _ in range(rng.randint(6, 12)):
            items.append(str(category * PER_CATEGORY + j + 1))
            j = (j + 1) % PER_CATEGORY if rng.random() < 0.5 else rng.randrange(PER_CATEGORY)
        rows.append((str(u + 1), items))
    return rows


def category_attributes() -> dict[str, list[str]]:
    return {str(c * PER_CATEGORY + j + 1): [f"category-{c}"] for c in range(N_CATEGORIES) for j in range(PER_CATEGORY)}


def test_new_items_only_ever_appear_as_test_targets():
    rows = category_rows()
    split = cold_start_split(rows, share=0.1, seed=3, max_len=5, attributes=category_attributes(), dataset="Toy")
    new = split.cold_items
    assert len(new) == round(0.1 * N_CATEGORIES * PER_CATEGORY)
    # The vocabulary is the whole catalog (the standard split's), new items and their attributes included.
    assert split.vocab.item_ids == leave_one_out_split(rows).vocab.item_ids
    assert all((split.item_attributes.table[split.vocab.index(i)] != 0).any() for i in new)
    trained = {split.vocab.item(i) for seq in split.train_sequences for i in seq}
    assert trained and not trained & new
    assert all(split.train_item_counts[split.vocab.index(i)] == 0 for i in new)
    for ex in split.val_examples + split.test_examples:
        assert ex.input_items and not set(ex.input_items) & new and len(ex.input_items) <= 5
    assert not any(ex.target_item in new for ex in split.val_examples)
    # Every user whose last item is new gives a cold test target (inputs here are never all new).
    users_with_new_last = {user for user, items in rows if items[-1] in new}
    cold_users = {ex.user_id for ex in split.test_examples if ex.target_item in new}
    assert cold_users == users_with_new_last and cold_users
    assert len(split.test_examples) == len(rows)
    assert split.n_dropped_val_new_target == sum(items[-2] in new for _, items in rows)
    # A user's test input is its history without the new items, the validation target included.
    user, items = next((u, s) for u, s in rows if s[-2] not in new)
    test = next(ex for ex in split.test_examples if ex.user_id == user)
    assert test.input_items == tuple(i for i in items[:-1] if i not in new)[-5:]
    info = split.info()
    assert info["protocol"] == "leave_one_out_cold_start" and info["n_cold_test_targets"] == len(cold_users)


def test_the_draw_is_deterministic_for_a_seed(tmp_path):
    rows = category_rows()
    a, b = cold_start_split(rows, share=0.2, seed=5), cold_start_split(rows, share=0.2, seed=5)
    assert a.cold_items == b.cold_items and a.test_examples == b.test_examples
    assert a.train_sequences == b.train_sequences and a.val_examples == b.val_examples
    assert cold_start_split(rows, share=0.2, seed=6).cold_items != a.cold_items
    # File order does not matter, only the catalog and the seed.
    assert cold_start_split(list(reversed(rows)), share=0.2, seed=5).cold_items == a.cold_items
    path = tmp_path / "Toy.txt"
    path.write_text("\n".join(f"{u} {' '.join(items)}" for u, items in rows) + "\n")
    attributes = tmp_path / "Toy_item2attributes.json"
    attributes.write_text(json.dumps(category_attributes()))
    loaded = load_cold_start_split(path, share=0.2, seed=5, attributes=attributes)
    assert loaded.dataset == "Toy" and loaded.cold_items == a.cold_items
    assert loaded.item_attributes.n_attributes == N_CATEGORIES
    with pytest.raises(ValueError, match="share"):
        cold_start_split(rows, share=1.0)


def test_an_id_only_model_never_ranks_a_new_item(settings):
    rows = category_rows()
    split = cold_start_split(rows, share=0.1, seed=3, max_len=5)
    result = train_model(settings, split, "covisitation", device="cpu")
    metrics = cold_start_metrics(result.model, split, "cpu", k=20)
    assert metrics["n_cold_targets"] > 0 and metrics["n_cold_in_vocab"] == metrics["n_cold_targets"]
    assert metrics["recall_at_20_cold"] == 0.0
    assert metrics["recall_at_20_warm"] > 0.3
    # Same evaluator, same examples: the two parts add up to the run's own test HR@20.
    n = metrics["n_cold_targets"] + metrics["n_warm_targets"]
    assert metrics["recall_at_20_warm"] * metrics["n_warm_targets"] / n == pytest.approx(result.test_metrics["hr_at_20"])
    # The zero is the split's doing: trained on the standard split, the same model ranks those targets.
    plain = leave_one_out_split(rows, max_len=5)
    seen = train_model(settings, plain, "covisitation", device="cpu")
    assert cold_start_metrics(seen.model, plain, "cpu", k=20, cold_items=split.cold_items)["recall_at_20_cold"] > 0.3


@pytest.mark.slow
@pytest.mark.skipif("n_attributes" not in {f.name for f in fields(SASRecConfig)},
                    reason="SASRec has no side information (SASRecConfig.n_attributes) yet")
def test_side_information_ranks_new_items(settings, tiny_sasrec):
    split = cold_start_split(category_rows(), share=0.1, seed=3, max_len=5, attributes=category_attributes())
    config = dict(epochs=15, batch_size=32, lr=3e-3, device="cpu", seed=0)
    side = train_model(settings, split, "sasrec", model_config=tiny_sasrec, **config)
    ids = train_model(settings, split, "sasrec", model_config=tiny_sasrec | {"n_attributes": 0}, **config)
    with_side = cold_start_metrics(side.model, split, "cpu", k=20)
    id_only = cold_start_metrics(ids.model, split, "cpu", k=20)
    assert side.config["n_attributes"] == N_CATEGORIES and ids.config["n_attributes"] == 0
    # The ID-only model has nothing to place a new item with; the attribute embedding does.
    assert id_only["recall_at_20_cold"] == 0.0 and id_only["n_cold_targets"] > 20
    assert with_side["recall_at_20_cold"] > 0.05


def test_temporal_split_marks_targets_without_a_training_event(settings):
    start = datetime(2026, 1, 1)
    hour = timedelta(hours=1)
    sequences = [
        # "z" first occurs in the test window: it never reaches the vocabulary.
        UserSequence("u1", ("a", "b", "z"), (start, start + hour, start + 50 * hour)),
        UserSequence("u2", ("b", "c", "a"), (start, start + 2 * hour, start + 49 * hour)),
        UserSequence("u3", ("c", "a", "b"), (start, start + 3 * hour, start + 26 * hour)),
    ]
    split = temporal_split(sequences, max_len=5, test_days=1, val_days=1)
    assert temporal_cold_items(split) == {"z"}
    result = train_model(settings, split, "popularity", device="cpu")
    metrics = cold_start_metrics(result.model, split, "cpu", k=20)
    # Outside the vocabulary: no model can rank it, whatever side information exists.
    assert metrics["n_cold_targets"] == 1 and metrics["n_cold_in_vocab"] == 0
    assert metrics["recall_at_20_cold"] == 0.0 and metrics["recall_at_20_warm"] == 1.0


def test_benchmark_writes_cold_start_records(tmp_path, settings):
    repo_root = str(Path(__file__).resolve().parents[2])
    if repo_root not in sys.path:  # benchmarks/ is not an installed package
        sys.path.insert(0, repo_root)
    from benchmarks import amazon_cold_start, report_docs

    data = tmp_path / "Toy.txt"
    data.write_text("\n".join(f"{u} {' '.join(items)}" for u, items in category_rows()) + "\n")
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps(category_attributes()))
    results = tmp_path / "amazon_loo.json"
    argv = ["--file", str(data), "--dataset", "Toy", "--models", "covisitation,popularity", "--share", "0.1",
            "--results", str(results), "--work-dir", str(tmp_path / "work"), "--no-progress", "--device", "cpu"]
    assert amazon_cold_start.main(argv) == 0
    records = json.loads(results.read_text())
    label = "amazon-Toy-cold-start[share=0.1,seed=0]"
    assert {(r["dataset"], r["model"], r["metric"]) for r in records} == {
        (label, model, metric) for model in ("covisitation", "popularity")
        for metric in ("recall_at_20_cold", "recall_at_20_warm", "n_cold_targets")}
    values = {(r["model"], r["metric"]): r["value"] for r in records}
    assert values["covisitation", "recall_at_20_cold"] == 0.0 and values["covisitation", "n_cold_targets"] > 0
    # The cold-start rows get a table of their own, not rows of the main Amazon table.
    blocks = report_docs.amazon_loo_section(records, tmp_path)
    tables = [b for b in blocks if "headers" in b]
    assert len(tables) == 1 and tables[0]["headers"][2] == "recall@20 cold" and len(tables[0]["rows"]) == 2
