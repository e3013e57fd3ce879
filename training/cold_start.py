"""Cold-start items: test targets the model never saw in training, and recall@k on them.

An item that arrives after the training period has no interactions to learn an ID embedding
from; only side information (its attributes) or a content-derived id can place it. This module
builds splits in which such items exist and measures each model on them apart from the rest.

Leave-one-out files (:func:`cold_start_split`). The Amazon files have no timestamps, so "items
whose first event is in the test window" cannot be read off them. The stand-in: a seeded random
``share`` of the catalog is declared *new*, i.e. released after every training and validation
event, and the split is built as if they had not existed before the test:

* every occurrence of a new item is removed from the training sequences and from the
  validation and test inputs (a user cannot have interacted with an unreleased item);
* a validation example whose target is new is dropped: epoch selection must not see them;
* test examples keep every target, new or not (the cold ones are what is measured);
* an example whose input is empty once the new items are gone is dropped (its user is a
  cold-start user, another problem), and counted in ``info()``;
* the vocabulary is still the whole catalog, so a new item has an index (an untrained
  embedding) and its attribute row, and a model with side information can rank it.

A random draw is not how real arrivals look (new items are not a uniform sample of the catalog,
and they arrive at one moment for every user), but it removes exactly what a cold item lacks
(every interaction before the test) while keeping the published per-user protocol for the rest.

Temporal splits (:func:`temporal_cold_items`). :func:`training.data.temporal_split` builds the
vocabulary from the training events only, so an item whose first event is after the training
period has no index: every model's score for it is a miss (the evaluator's rule for a target
outside the vocabulary), whatever side information exists. The function marks those targets so
their share and the (structural) zero can be reported honestly; ranking them needs a vocabulary
taken from the item catalog rather than from training events, which that split does not do.

:func:`cold_start_metrics` scores a trained model on the cold and warm test targets separately
through :func:`training.evaluate.evaluate_examples`, the evaluator every test metric uses (same
seen-item rule, same tie rule), so cold + warm recall, weighted by their counts, is the model's
overall HR@k. With one target per example, recall@k equals HR@k.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from training.data import EvalExample, Split
from training.evaluate import evaluate_examples
from training.item_side import ItemAttributes, read_item_attributes_json
from training.loo import MIN_ITEMS, LeaveOneOutSplit, leave_one_out_split, read_user_sequences

DEFAULT_SHARE = 0.05
DEFAULT_SEED = 0


@dataclass
class ColdStartSplit(LeaveOneOutSplit):
    cold_items: frozenset[str] = frozenset()  # the "new" items: never in training or any input
    share: float = DEFAULT_SHARE
    seed: int = DEFAULT_SEED
    n_dropped_val_new_target: int = 0  # validation examples dropped because their target is new
    n_dropped_empty_input: int = 0  # validation + test examples whose whole input was new items

    def info(self) -> dict:
        cold_targets = sum(ex.target_item in self.cold_items for ex in self.test_examples)
        return super().info() | {
            "protocol": "leave_one_out_cold_start", "cold_share": self.share, "cold_seed": self.seed,
            "n_cold_items": len(self.cold_items), "n_cold_test_targets": cold_targets,
            "n_dropped_val_new_target": self.n_dropped_val_new_target,
            "n_dropped_empty_input": self.n_dropped_empty_input,
        }


def draw_new_items(item_ids: Sequence[str], share: float, seed: int) -> frozenset[str]:
    """A seeded random ``share`` of ``item_ids`` (at least one item when ``share > 0``)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    n_new = max(1, round(share * len(item_ids))) if share > 0 else 0
    # Sorted first, so the draw depends on the catalog and the seed only, not on file order.
    return frozenset(random.Random(seed).sample(sorted(item_ids), n_new))


def cold_start_split(
    rows: Sequence[tuple[str, Sequence[str]]],
    share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED,
    max_len: int = 50,
    attributes: Mapping[str, Sequence[object]] | str | Path | None = None,
    dataset: str = "",
) -> ColdStartSplit:
    """Leave-one-out split of ``rows`` with a ``share`` of the catalog arriving in the test
    window (see the module docstring). ``attributes``: ``{item: [attribute, ...]}`` or the path
    of an ``item2attributes.json``; its table covers the whole catalog, new items included."""
    # The standard split gives the catalog (vocabulary) and the counts that do not change.
    base = leave_one_out_split(rows, max_len=max_len, dataset=dataset)
    vocab = base.vocab
    new = draw_new_items(vocab.item_ids, share, seed)
    train: list[list[int]] = []
    val: list[EvalExample] = []
    test: list[EvalExample] = []
    dropped_new, dropped_empty = 0, 0
    for user_id, items in rows:
        items = list(items)
        if len(items) < MIN_ITEMS:
            train.append(vocab.encode(i for i in items if i not in new))
            continue
        history = [i for i in items[:-2] if i not in new]
        train.append(vocab.encode(history))
        if items[-2] in new:
            dropped_new += 1
        elif history:
            val.append(EvalExample(user_id, tuple(history[-max_len:]), items[-2]))
        else:
            dropped_empty += 1
        # The validation target is part of the test input, unless it is itself new.
        test_input = [i for i in items[:-1] if i not in new]
        if test_input:
            test.append(EvalExample(user_id, tuple(test_input[-max_len:]), items[-1]))
        else:
            dropped_empty += 1
    split = ColdStartSplit(
        train_sequences=[seq for seq in train if seq], val_examples=val, test_examples=test, vocab=vocab,
        max_len=max_len, dataset=dataset, n_users=base.n_users, n_events=base.n_events,
        train_item_counts=Counter(i for seq in train for i in seq), cold_items=new, share=share, seed=seed,
        n_dropped_val_new_target=dropped_new, n_dropped_empty_input=dropped_empty,
    )
    if attributes is not None:
        mapping = attributes if isinstance(attributes, Mapping) else read_item_attributes_json(attributes)
        split.item_attributes = ItemAttributes.from_mapping(vocab, mapping)
    return split


def load_cold_start_split(
    path: str | Path, share: float = DEFAULT_SHARE, seed: int = DEFAULT_SEED, max_len: int = 50,
    attributes: str | Path | None = None,
) -> ColdStartSplit:
    """:func:`cold_start_split` of an Amazon-format file (``dataset`` = the file's stem)."""
    path = Path(path)
    return cold_start_split(read_user_sequences(path), share=share, seed=seed, max_len=max_len,
                            attributes=attributes, dataset=path.stem)


def temporal_cold_items(split: Split) -> frozenset[str]:
    """The test targets of a temporal split whose item has no training event.

    The split's vocabulary is exactly the items with a training event, so these are the targets
    outside it: items first seen in the test window, and also those first seen in the validation
    window (no training event either; the model has no embedding for them). Every model misses
    them by construction (see the module docstring)."""
    return frozenset(ex.target_item for ex in split.test_examples if ex.target_item not in split.vocab)


def cold_start_metrics(
    model, split: Split, device: torch.device | str = "cpu", k: int = 20, batch_size: int = 256,
    cold_items: frozenset[str] | None = None,
) -> dict[str, float | int | None]:
    """Recall@``k`` of ``model`` (``score_last``, trained on ``split``'s vocabulary) on the test
    examples whose target is cold and on the others, with their counts.

    ``cold_items``: default the split's own (``split.cold_items``), else, for a split without
    them (a temporal one), :func:`temporal_cold_items`. ``n_cold_in_vocab`` counts the cold
    targets the model can rank at all (all of them in a cold-start LOO split, none in a temporal
    one). A recall over no examples is ``None``.
    """
    if cold_items is None:
        cold_items = getattr(split, "cold_items", None)
        if cold_items is None:
            cold_items = temporal_cold_items(split)
    cold = [ex for ex in split.test_examples if ex.target_item in cold_items]
    warm = [ex for ex in split.test_examples if ex.target_item not in cold_items]
    model.eval()

    def recall(examples: list[EvalExample]) -> float | None:
        if not examples:
            return None
        metrics = evaluate_examples(model.score_last, examples, split.vocab, split.max_len, k=k, ks=(k,),
                                    batch_size=batch_size, device=device, exclude_seen=split.exclude_seen)
        return metrics[f"hr_at_{k}"]

    return {
        f"recall_at_{k}_cold": recall(cold), f"recall_at_{k}_warm": recall(warm),
        "n_cold_targets": len(cold), "n_warm_targets": len(warm),
        "n_cold_in_vocab": sum(ex.target_item in split.vocab for ex in cold),
    }
