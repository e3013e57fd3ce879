"""Leave-one-out split of per-user item sequences (the protocol of the Amazon benchmarks).

Input format (the S3Rec / SASRec files, e.g. ``../shared/data/amazon/Beauty.txt``): one user per
line, ``user_id item_id item_id ...``, items in time order, no timestamps.

Per user with items ``s = [i_1, ..., i_n]`` (the standard SASRec / eSASRec protocol):

* training sequence: ``s[:-2]`` (every transition in it is a training target);
* validation example: ``s[:-2][-max_len:] -> s[-2]``;
* test example: ``s[:-1][-max_len:] -> s[-1]`` (its input includes the validation target).

Users with fewer than 3 items contribute their items to training only (they cannot give a
validation and a test example without an empty training input); Amazon 5-core has none.

The vocabulary is the whole catalog of the file (every item id that occurs), as in the published
numbers: an item occurring only as some user's validation/test target still has an index (an
untrained embedding), so it can be ranked, while the training sequences never contain it. Items
are indexed in numeric order when every id is an integer (so index = id for the S3Rec files),
otherwise in string order.

Repeats: the evaluator excludes the input's items from the ranking, so a target the user already
has in the (truncated) input is a miss for every model; the README's protocol note ("items the
user already has in the input sequence are usually filtered out") is this convention, and Amazon
5-core has few repeats. Consecutive duplicates are kept as they are in the file.

``LeaveOneOutSplit`` has the fields :func:`training.train.train_model` consumes
(:class:`training.data.Split`), so the same loop trains and evaluates under either protocol.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from training.data import EvalExample, ItemVocabulary
from training.item_side import ItemAttributes, read_item_attributes_json

MIN_ITEMS = 3  # a user needs a training item, a validation target and a test target


@dataclass
class LeaveOneOutSplit:
    train_sequences: list[list[int]]  # vocabulary indices, one per user, time order (s[:-2])
    val_examples: list[EvalExample]
    test_examples: list[EvalExample]
    vocab: ItemVocabulary
    max_len: int
    dataset: str = ""
    n_users: int = 0
    n_events: int = 0
    train_item_counts: Counter = field(default_factory=Counter)  # vocab index -> interactions
    as_of: str | None = None  # no run date: the protocol is not temporal
    exclude_seen: bool = True  # the published protocol filters the input's items
    item_attributes: ItemAttributes | None = None  # side information, when the data set has it

    def info(self) -> dict:
        """JSON-friendly description, stored in checkpoints."""
        return {
            "protocol": "leave_one_out",
            "dataset": self.dataset,
            "max_sequence_length": self.max_len,
            "n_users": self.n_users,
            "n_events": self.n_events,
            "n_items": self.vocab.n_items,
            "n_train_sequences": len(self.train_sequences),
            "n_train_interactions": sum(len(s) for s in self.train_sequences),
            "n_val_examples": len(self.val_examples),
            "n_test_examples": len(self.test_examples),
        }


def read_user_sequences(path: str | Path) -> list[tuple[str, list[str]]]:
    """``user item item ...`` lines -> ``[(user_id, [item, ...])]`` in file order; blank lines
    are skipped, a user line without items is an error."""
    rows: list[tuple[str, list[str]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{number}: a user line needs at least one item")
            rows.append((parts[0], parts[1:]))
    if not rows:
        raise ValueError(f"{path}: no user sequences")
    return rows


def _catalog(rows: Sequence[tuple[str, Sequence[str]]]) -> ItemVocabulary:
    items = {item for _, seq in rows for item in seq}
    if all(item.isdigit() for item in items):
        return ItemVocabulary(sorted(items, key=int))
    return ItemVocabulary(sorted(items))


def leave_one_out_split(
    rows: Sequence[tuple[str, Sequence[str]]], max_len: int = 50, dataset: str = ""
) -> LeaveOneOutSplit:
    """Per-user leave-last-out split (see the module docstring)."""
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    vocab = _catalog(rows)
    train: list[list[int]] = []
    val: list[EvalExample] = []
    test: list[EvalExample] = []
    for user_id, items in rows:
        items = list(items)
        if len(items) < MIN_ITEMS:
            train.append(vocab.encode(items))
            continue
        train.append(vocab.encode(items[:-2]))
        val.append(EvalExample(user_id, tuple(items[:-2][-max_len:]), items[-2]))
        test.append(EvalExample(user_id, tuple(items[:-1][-max_len:]), items[-1]))
    counts: Counter = Counter(i for seq in train for i in seq)
    return LeaveOneOutSplit(
        train_sequences=[seq for seq in train if seq],
        val_examples=val,
        test_examples=test,
        vocab=vocab,
        max_len=max_len,
        dataset=dataset,
        n_users=len(rows),
        n_events=sum(len(seq) for _, seq in rows),
        train_item_counts=counts,
    )


def attributes_file(path: str | Path) -> Path:
    """Where the S3Rec release keeps a data file's item side information: ``X_item2attributes.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_item2attributes.json")


def load_loo_split(path: str | Path, max_len: int = 50, attributes: str | Path | None = None) -> LeaveOneOutSplit:
    """Read an Amazon-format file and split it leave-one-out; ``attributes``: an
    ``item2attributes.json`` whose side information the split carries (:mod:`training.item_side`)."""
    path = Path(path)
    split = leave_one_out_split(read_user_sequences(path), max_len=max_len, dataset=path.stem)
    if attributes is not None:
        split.item_attributes = ItemAttributes.from_mapping(split.vocab, read_item_attributes_json(attributes))
    return split
