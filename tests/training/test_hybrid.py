"""Item side information in SASRec, and the hybrid of SASRec and co-visitation (the default recipe)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from core.settings import Settings
from training.item_side import ItemAttributes, read_item_attributes_json
from training.loo import attributes_file, leave_one_out_split, load_loo_split
from training.models import make_config, split_shape
from training.models.hybrid import Hybrid, HybridConfig
from training.models.sasrec import SASRec
from training.recommender import load_recommender
from training.train import train_model

N_ITEMS = 40


def ring_split(n_users: int = 240, seed: int = 0):
    """Users walk a ring of items (mostly i -> i + 1); items carry category c(i % 5), brand b(i % 3)."""
    rng = random.Random(seed)
    rows = []
    for user in range(n_users):
        item = rng.randrange(N_ITEMS)
        seq = []
        for _ in range(rng.randrange(4, 12)):
            seq.append(str(item + 1))
            item = (item + (1 if rng.random() < 0.85 else rng.randrange(N_ITEMS))) % N_ITEMS
        rows.append((str(user), seq))
    split = leave_one_out_split(rows, max_len=10)
    split.item_attributes = ItemAttributes.from_mapping(
        split.vocab, {str(i): [f"c{i % 5}", f"b{i % 3}"] for i in range(1, N_ITEMS + 1)})
    return split


def test_attribute_table_follows_the_vocabulary_and_ignores_unknown_items():
    split = leave_one_out_split([("u1", ["10", "2", "7"]), ("u2", ["2", "7", "10"])], max_len=5)
    side = ItemAttributes.from_mapping(split.vocab, {"2": ["x", "y", "x"], "10": ["z"], "999": ["q"]})
    assert side.n_attributes == 3 and side.attribute_ids == ("x", "y", "z")
    assert side.table[split.vocab.index("2")].tolist() == [1, 2]  # duplicates count once
    assert side.table[split.vocab.index("10")].tolist() == [3, 0]
    assert side.table[split.vocab.index("7")].tolist() == [0, 0]  # no side information
    assert side.table[0].tolist() == [0, 0] and side.coverage == pytest.approx(2 / 3)


def test_a_bad_attributes_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "X_item2attributes.json"
    bad.write_text('["not", "an", "object"]')
    with pytest.raises(ValueError, match="JSON object of lists"):
        read_item_attributes_json(bad)
    bad.write_text("{broken")
    with pytest.raises(ValueError, match="cannot read item attributes"):
        read_item_attributes_json(bad)


def test_loo_split_reads_the_attributes_beside_the_data_file(tmp_path):
    data = tmp_path / "Shop.txt"
    data.write_text("1 1 2 3\n2 2 3 1\n")
    attributes_file(data).write_text(json.dumps({"1": [5], "2": [5, 6], "3": [7]}))
    split = load_loo_split(data, max_len=5, attributes=attributes_file(data))
    assert split.item_attributes.n_attributes == 3
    assert split_shape(split) == {"n_items": 3, "max_len": 5, "n_attributes": 3, "attributes_per_item": 2}


def test_sasrec_item_vectors_add_the_mean_attribute_embedding():
    split = ring_split()
    config = make_config("sasrec", **split_shape(split), d_model=16, n_heads=1)
    model = SASRec.from_split(config, split)
    assert torch.equal(model.item_attributes, split.item_attributes.table)
    item = split.vocab.index("7")  # category c2, brand b1
    attrs = model.item_attributes[item][model.item_attributes[item] != 0]
    expected = model.item_emb.weight[item] + model.attr_emb.weight[attrs].mean(dim=0)
    assert torch.allclose(model.output_embeddings[item], expected)
    # The model's own overrides win over the split: n_attributes=0 is the ID-only SASRec.
    plain = make_config("sasrec", **(split_shape(split) | {"n_attributes": 0}))
    assert not hasattr(SASRec(plain), "attr_emb")


def test_hybrid_with_blend_zero_ranks_exactly_like_its_sasrec():
    split = ring_split()
    config = make_config("hybrid", **split_shape(split), d_model=16, n_heads=1, blend=0.0)
    torch.manual_seed(0)
    hybrid = Hybrid.from_split(config, split).eval()
    plain = SASRec.from_split(config, split).eval()
    plain.load_state_dict({k: v for k, v in hybrid.state_dict().items() if not k.startswith("covisitation.")})
    ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    assert torch.equal(hybrid.score_last(ids), plain.score_last(ids))
    hybrid.config.blend = 1.0  # all co-visitation: its order, whatever SASRec says
    mixed = hybrid.score_last(ids)[:, 1:]
    covisits = hybrid.covisitation.score_last(ids)[:, 1:]
    assert torch.equal(mixed.argsort(dim=1, descending=True, stable=True)[:, :5],
                       covisits.argsort(dim=1, descending=True, stable=True)[:, :5])


def test_calibrate_keeps_the_best_weight_on_validation_and_ties_go_to_the_smaller():
    model = Hybrid(HybridConfig(n_items=5, d_model=8, n_heads=1, blend_grid=(0.0, 0.2, 0.4, 0.6),
                                blend_refine=()))
    curve = {0.0: 0.10, 0.2: 0.15, 0.4: 0.15, 0.6: 0.12}
    seen = []

    def validate():
        seen.append(model.config.blend)
        return {"ndcg_at_10": curve[model.config.blend]}

    best = model.calibrate(validate, "ndcg_at_10")
    assert seen == [0.0, 0.2, 0.4, 0.6]
    assert model.config.blend == 0.2 and best == {"ndcg_at_10": 0.15}
    seen.clear()
    model.config.blend = 0.0  # the loop already validated the selected epoch at the current weight
    assert model.calibrate(validate, "ndcg_at_10", known={"ndcg_at_10": 0.10}) == {"ndcg_at_10": 0.15}
    assert seen == [0.2, 0.4, 0.6]
    empty = Hybrid(HybridConfig(n_items=5, d_model=8, n_heads=1, blend=0.3, blend_grid=()))
    assert empty.calibrate(validate, "ndcg_at_10") is None and empty.config.blend == 0.3


def test_calibrate_refines_around_the_grids_best_and_stays_in_range():
    model = Hybrid(HybridConfig(n_items=5, d_model=8, n_heads=1, blend_grid=(0.0, 0.3, 0.6, 0.9),
                                blend_refine=(0.1, 0.05)))
    peak = 0.68  # between two grid points: the grid alone would stop at 0.6
    seen = []

    def validate():
        seen.append(model.config.blend)
        return {"ndcg_at_10": 1.0 - abs(model.config.blend - peak)}

    best = model.calibrate(validate, "ndcg_at_10")
    assert seen[:4] == [0.0, 0.3, 0.6, 0.9]
    assert seen[4:] == [0.5, 0.7, 0.65, 0.75]  # around 0.6, then around 0.7
    assert model.config.blend == pytest.approx(0.7) and best["ndcg_at_10"] == pytest.approx(0.98)
    assert len(seen) == len(set(seen))  # no weight validated twice

    seen.clear()
    edge = Hybrid(HybridConfig(n_items=5, d_model=8, n_heads=1, blend_grid=(0.0, 0.5), blend_refine=(0.1,)))
    model = edge
    peak = -1.0  # best at 0: the step below is clipped to 0, already known, so not validated again
    edge.calibrate(validate, "ndcg_at_10")
    assert seen == [0.0, 0.5, 0.1] and edge.config.blend == 0.0


def test_hybrid_trains_calibrates_on_validation_and_its_checkpoint_serves_the_same(tmp_path):
    split = ring_split()
    result = train_model(Settings(home=tmp_path), split, "hybrid", epochs=4, device="cpu", seed=3,
                         model_config={"d_model": 16, "n_heads": 1}, checkpoint_path=tmp_path / "hybrid.pt")
    assert result.config["n_attributes"] == 8
    blend = result.config["blend"]
    # The calibrated pick, recorded in the checkpoint: the default grid and refinement steps are
    # all multiples of the finest step, so any weight calibrate can reach is one too.
    finest = min(HybridConfig.blend_refine)
    assert round(blend / finest, 6).is_integer()
    assert 0.0 <= blend <= max(HybridConfig.blend_grid) + sum(HybridConfig.blend_refine)
    # The recorded validation figures are the chosen weight's (the selection the loop reports).
    assert result.val_metrics["ndcg_at_10"] >= result.history[result.best_epoch - 1]["val_ndcg_at_10"]
    served = load_recommender(tmp_path / "hybrid.pt")
    assert served.config.blend == blend
    ids = torch.tensor([[0, 0, 1, 2, 3]])
    assert torch.allclose(served.score(ids), result.model.score_last(ids).to(served.score(ids).dtype))
    assert served.evaluate(split.test_examples, k=10)["ndcg_at_10"] == pytest.approx(
        result.test_metrics["ndcg_at_10"])


def test_an_item_without_training_interactions_is_represented_by_its_attributes_alone():
    split = ring_split()
    never = split.vocab.index(split.test_examples[0].target_item)
    split.train_item_counts[never] = 0  # as if it arrived after training (the cold-start split's case)
    config = make_config("sasrec", **split_shape(split), d_model=16, n_heads=1)
    model = SASRec.from_split(config, split)
    attrs = model.item_attributes[never][model.item_attributes[never] != 0]
    assert torch.allclose(model.output_embeddings[never], model.attr_emb.weight[attrs].mean(dim=0))
    assert model.has_id_embedding.sum() == N_ITEMS - 1
