"""Item side information (category, brand, ... ids) aligned with a split's item vocabulary.

Models that use it (``SASRecConfig.n_attributes > 0``, the hybrid, the generative retrieval
model) read ``split.item_attributes``: a ``[N + 1, A]`` table of attribute indices per
vocabulary index, 0-padded, row 0 (padding) all 0. Attribute ids are whatever strings the source
uses; they are indexed ``1..n_attributes`` in sorted order, so the same mapping always gives the
same table. An item the mapping lacks has an all-0 row (no side information), which the models
treat as "ID only".

Sources: the S3Rec ``*_item2attributes.json`` beside the Amazon files (``{"item": [attr, ...]}``)
and the lake's item table (the importers' ``--items`` file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from training.data import ItemVocabulary


@dataclass(frozen=True)
class ItemAttributes:
    n_attributes: int  # attribute indices run 1..n_attributes; 0 is padding
    table: torch.Tensor  # [N + 1, A] long, row = vocabulary index, attributes left-aligned, 0-padded
    attribute_ids: tuple[str, ...] = ()  # index k (1-based) -> the source's attribute id

    @property
    def per_item(self) -> int:
        return int(self.table.shape[1])

    @property
    def coverage(self) -> float:
        """Share of catalog items (padding excluded) with at least one attribute."""
        rows = self.table[1:]
        return float((rows != 0).any(dim=1).float().mean()) if rows.shape[0] else 0.0

    @classmethod
    def from_mapping(cls, vocab: ItemVocabulary, mapping: Mapping[str, Sequence[object]],
                     max_per_item: int | None = None) -> "ItemAttributes":
        """``{item id: [attribute id, ...]}`` -> the table for ``vocab`` (items outside it ignored).

        Duplicate attributes of an item count once, in first-seen order; ``max_per_item`` keeps
        the first ones (None: as many as the richest item has).
        """
        per_item: dict[int, list[str]] = {}
        for item, attributes in mapping.items():
            index = vocab.index(str(item)) if str(item) in vocab else 0
            if index:
                per_item[index] = list(dict.fromkeys(str(a) for a in attributes))
        names = tuple(sorted({a for values in per_item.values() for a in values}))
        lookup = {name: k + 1 for k, name in enumerate(names)}
        width = max((len(v) for v in per_item.values()), default=0)
        width = max(1, min(width, max_per_item) if max_per_item else width)
        table = torch.zeros(vocab.n_items + 1, width, dtype=torch.long)  # [N + 1, A]
        for index, values in per_item.items():
            codes = [lookup[a] for a in values[:width]]
            table[index, :len(codes)] = torch.tensor(codes, dtype=torch.long)
        return cls(n_attributes=len(names), table=table, attribute_ids=names)


def read_item_attributes_json(path: str | Path) -> dict[str, list[str]]:
    """An S3Rec ``item2attributes.json`` -> ``{item id: [attribute id, ...]}``; a clear error
    when it is not a JSON object of lists."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read item attributes: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"{path}: item attributes must be a JSON object of lists, {{item: [attribute, ...]}}")
    return {str(item): [str(a) for a in values] for item, values in data.items()}
