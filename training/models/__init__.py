"""One file per architecture; this registry is how the loop, checkpoints and the recommender
find a model's config dataclass and module class from its ``model_name``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from core.errors import UserError
from core.names import MODEL_NAMES

from training.models.baselines import PopularityConfig, PopularityModel
from training.models.bert4rec import BERT4Rec, BERT4RecConfig
from training.models.covisitation import CoVisitation, CoVisitationConfig
from training.models.gru4rec import GRU4Rec, GRU4RecConfig
from training.models.hstu import HSTU, HSTUConfig
from training.models.hybrid import Hybrid, HybridConfig
from training.models.repeat import RepeatConfig, RepeatModel
from training.models.sasrec import SASRec, SASRecConfig
from training.models.sknn import SKNN, SKNNConfig
from training.models.tiger import TIGER, TIGERConfig

# Every module class has ``objective``: "next_item" (causal; hidden state at t predicts t + 1),
# "masked" (Cloze; has ``mask_token`` and ``config.mask_prob``) or "none" (non-neural; built by
# the classmethod ``fit(config, train_sequences)``, state in buffers). Neural ones have
# ``forward(input_ids [B, L]) -> [B, L, D]`` and ``output_embeddings [N + 1, D]``; all have
# ``score_last(input_ids [B, L]) -> [B, N + 1]`` with column 0 = -inf. "generative" (TIGER) is
# built by ``from_split`` (its semantic-id table, a buffer); ``forward`` returns the encoder
# memory, ``generative_loss(memory, targets)`` the loss, and ``score_last`` is a beam search
# (items outside the beam -inf); no ``output_embeddings``.
MODELS: dict[str, tuple[type, type]] = {
    "sasrec": (SASRecConfig, SASRec),
    "bert4rec": (BERT4RecConfig, BERT4Rec),
    "gru4rec": (GRU4RecConfig, GRU4Rec),
    "hstu": (HSTUConfig, HSTU),
    "popularity": (PopularityConfig, PopularityModel),
    "covisitation": (CoVisitationConfig, CoVisitation),
    "sknn": (SKNNConfig, SKNN),
    "repeat": (RepeatConfig, RepeatModel),
    "hybrid": (HybridConfig, Hybrid),
    "tiger": (TIGERConfig, TIGER),
}
# The floors below torch offer the names from core.names: they must be exactly these.
assert tuple(MODELS) == MODEL_NAMES, "core.names.MODEL_NAMES is out of date"


class UnknownModel(UserError, ValueError):
    """A model name the registry does not have."""


def model_classes(model_name: str) -> tuple[type, type]:
    try:
        return MODELS[model_name]
    except KeyError:
        raise UnknownModel(f"unknown model {model_name!r}; known: {', '.join(sorted(MODELS))}") from None


# What the loop passes every config from the split; an architecture without the field ignores it.
SPLIT_SHAPE = ("n_items", "max_len", "n_attributes", "attributes_per_item")


def split_shape(split) -> dict[str, int]:
    """The config values a split decides: catalog size, sequence length, side-information shape."""
    shape = {"n_items": split.vocab.n_items, "max_len": split.max_len}
    side = getattr(split, "item_attributes", None)
    if side is not None and side.n_attributes > 0:
        shape |= {"n_attributes": side.n_attributes, "attributes_per_item": side.per_item}
    return shape


def make_config(model_name: str, **values: Any):
    """The model's config dataclass from ``values``, ignoring keys it has no field for (so a
    caller can pass the shared ``SPLIT_SHAPE`` values to any architecture)."""
    config_cls, _ = model_classes(model_name)
    names = {f.name for f in fields(config_cls)}
    unknown = set(values) - names - set(SPLIT_SHAPE)
    if unknown:
        raise ValueError(f"{model_name} config has no fields {sorted(unknown)}")
    return config_cls(**{k: v for k, v in values.items() if k in names})


def build_model(model_name: str, config):
    _, model_cls = model_classes(model_name)
    return model_cls(config)
