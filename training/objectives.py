"""What the shared loop optimises, one object per kind of model: its windows, batches and loss.

The loop (:mod:`training.train`) is handed an :class:`Objective` (:func:`objective_for` reads the
module class's ``objective``) and never asks which one it has:

* :class:`NextItemObjective` (``"next_item"``: SASRec, GRU4Rec, HSTU; the default): causal, the
  hidden state at step t is trained to predict item t + 1 on every window of every training
  sequence (:func:`training_windows`);
* :class:`MaskedObjective` (``"masked"``: BERT4Rec): a random ``mask_prob`` share of each window's
  items (at least one per row) is replaced by ``model.mask_token`` and predicted at those
  positions only; a ``mask_last_prob`` share of rows gets only its last item masked (the
  next-item case) (:func:`item_windows`, :func:`mask_batch`);
* :class:`GenerativeObjective` (``"generative"``: TIGER): next-item windows, the loss is the
  decoder's cross-entropy over the target item's semantic-id codes;
* :class:`FitObjective` (``"none"``: the non-neural models): built from the training sequences
  (``fit(config, sequences)``; popularity from the training counts), nothing to optimise, the
  loop validates it once.

Loss: sampled softmax (:func:`training.losses.sampled_softmax_loss`) when the train config (or
the model config) says ``loss="sampled"``, otherwise full softmax over the catalog.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from training.config import TrainConfig
from training.data import Split
from training.losses import full_softmax_loss, sampled_softmax_loss
from training.models import model_classes
from training.models.baselines import PopularityModel


def training_windows(sequences: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every next-item transition of every training sequence, exactly once.

    A sequence longer than ``max_len + 1`` is cut from its end into windows of ``max_len + 1``
    items overlapping by one item, so heavy users' early history is still trained on instead of
    being truncated away. Returns left-padded ``inputs, targets`` of shape ``[W, max_len]``.
    """
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            window = seq[start:end]
            inputs.append(window[:-1])
            targets.append(window[1:])
            end = start + 1 if start > 0 else 0
    if not inputs:
        raise ValueError("no training sequence has two items: nothing to learn from")
    x = torch.zeros(len(inputs), max_len, dtype=torch.long)  # [W, max_len]
    y = torch.zeros(len(inputs), max_len, dtype=torch.long)  # [W, max_len]
    for row, (inp, tgt) in enumerate(zip(inputs, targets)):
        x[row, max_len - len(inp):] = torch.tensor(inp, dtype=torch.long)
        y[row, max_len - len(tgt):] = torch.tensor(tgt, dtype=torch.long)
    return x, y


def item_windows(sequences: list[list[int]], max_len: int) -> torch.Tensor:
    """The masked objective's windows: each sequence cut from its end into non-overlapping
    windows of at most ``max_len`` items (windows of one item dropped), left-padded ``[W, max_len]``."""
    rows: list[list[int]] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len)
            rows.append(seq[start:end])
            end = start
    if not rows:
        raise ValueError("no training sequence has two items: nothing to learn from")
    x = torch.zeros(len(rows), max_len, dtype=torch.long)  # [W, max_len]
    for row, items in enumerate(rows):
        x[row, max_len - len(items):] = torch.tensor(items, dtype=torch.long)
    return x


def mask_batch(
    x: torch.Tensor, mask_token: int, mask_prob: float, mask_last_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, L]`` (CPU, left-padded) -> (masked inputs, targets) for the masked objective.

    A ``mask_prob`` share of each row's items is masked, at least one per row (the last item
    when the draw picked none); a ``mask_last_prob`` share of rows has only its last item masked.
    Targets hold the original item at masked positions and 0 elsewhere.
    """
    is_item = x != 0  # [B, L]
    masked = (torch.rand(x.shape, generator=generator) < mask_prob) & is_item  # [B, L]
    if mask_last_prob > 0:
        last_only = torch.rand(x.shape[0], generator=generator) < mask_last_prob  # [B]
        masked[last_only] = False
        masked[last_only, -1] = True
    none = ~masked.any(dim=1)  # [B]
    masked[none, -1] = True  # left padding: the last column is always an item
    inputs = torch.where(masked, torch.full_like(x, mask_token), x)  # [B, L]
    targets = torch.where(masked, x, torch.zeros_like(x))  # [B, L]
    return inputs, targets


def batches(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, buckets: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Index batches of an epoch from the (shuffled, sharded) ``order``.

    ``buckets == 0``: consecutive slices of ``order``. Otherwise every run of ``buckets *
    batch_size`` windows is sorted by length (stable) and sliced, and the batches' order is
    shuffled with ``generator``: each batch is padded to about its own length, and the epoch
    still visits every window exactly once, deterministically for a seed.
    """
    if buckets <= 0:
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    out: list[torch.Tensor] = []
    chunk = buckets * batch_size
    for s in range(0, len(order), chunk):
        part = order[s:s + chunk]  # [<= chunk]
        part = part[torch.sort(lengths[part], stable=True).indices]
        out += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    perm = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in perm]


class Objective(ABC):
    """One run's training objective: builds the model, cuts its windows, makes each step's batch
    and computes its loss. Stateful (windows, generators): one instance per ``train_model`` call."""

    name: ClassVar[str]

    def build(self, model_cls: type, config: Any, split: Split) -> nn.Module:
        # A model that takes something from the training data at construction (side information,
        # fitted statistics) has ``from_split``; the others are built from their config alone.
        if hasattr(model_cls, "from_split"):
            return model_cls.from_split(config, split)
        return model_cls(config)

    def trainable(self, model: nn.Module) -> bool:
        return any(p.requires_grad for p in model.parameters())

    def start(self, model: nn.Module, config: Any, tc: TrainConfig, seed: int, rank: int,
              device: torch.device) -> None:
        """Bind the run's model, loss and generators (seeded per rank, like the data shards).

        Both generators exist whatever the objective, so every resumable checkpoint holds the
        same RNG states.
        """
        self.model = model
        self.loss_kind = tc.loss or getattr(config, "loss", None) or "full"
        self.n_negatives = tc.n_negatives or getattr(config, "n_negatives", None) or 256
        self.mask_rng = torch.Generator().manual_seed(seed + 1000 + rank)
        self.sample_rng = torch.Generator(device=device).manual_seed(seed + 2000 + rank)

    @abstractmethod
    def windows(self, sequences: list[list[int]], max_len: int) -> torch.Tensor:
        """Cut the training sequences into the epoch's windows; their inputs ``[W, max_len]``."""

    @abstractmethod
    def _pair(self, idx: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``idx [B]`` of windows, ``x [B, L]`` cut to its width -> (inputs, targets)."""

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) ``[B, L]`` on the CPU for the windows ``idx [B]``, 0 = padding."""
        x = self.inputs[idx]  # [B, max_len]
        # Drop the columns that are padding in every row of this batch (a CPU reduction: no
        # device sync).
        width = int((x != 0).sum(dim=1).max())
        return self._pair(idx, x[:, -width:])  # [B, L] x2

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden ``[B, L, D]``, targets ``[B, L]`` -> the mean loss over the target positions."""
        if self.loss_kind == "sampled":
            return sampled_softmax_loss(hidden, targets, self.model.output_embeddings,
                                        n_negatives=self.n_negatives, generator=self.sample_rng)
        return full_softmax_loss(hidden, targets, self.model.output_embeddings)

    def rng_states(self, device: torch.device) -> dict[str, torch.Tensor | None]:
        return {"mask_rng": self.mask_rng.get_state(),
                "sample_rng": self.sample_rng.get_state() if device.type == "cpu" else None}

    def load_rng_states(self, state: dict[str, Any], device: torch.device) -> None:
        self.mask_rng.set_state(state["mask_rng"])
        if device.type == "cpu" and "sample_rng" in state:
            self.sample_rng.set_state(state["sample_rng"])


class NextItemObjective(Objective):
    name = "next_item"

    def windows(self, sequences: list[list[int]], max_len: int) -> torch.Tensor:
        self.inputs, self.targets = training_windows(sequences, max_len)  # [W, max_len] x2
        return self.inputs

    def _pair(self, idx: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.targets[idx][:, -x.shape[1]:]  # [B, L] x2


class GenerativeObjective(NextItemObjective):
    """Generative retrieval (TIGER): next-item windows of at most ``config.max_items`` inputs
    (what the encoder reads), every step a target; the loss is the model's teacher-forced
    cross-entropy over each target's semantic-id codes (``model.generative_loss(hidden, targets)``,
    ``hidden`` being the encoder memory that ``forward`` returns)."""

    name = "generative"

    def start(self, model: nn.Module, config: Any, tc: TrainConfig, seed: int, rank: int,
              device: torch.device) -> None:
        super().start(model, config, tc, seed, rank, device)
        self.loss_kind = "semantic_id_cross_entropy"  # not a softmax over the catalog
        self.max_items = int(config.max_items)

    def windows(self, sequences: list[list[int]], max_len: int) -> torch.Tensor:
        return super().windows(sequences, min(max_len, self.max_items))

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.model.generative_loss(hidden, targets)


class MaskedObjective(Objective):
    name = "masked"

    def start(self, model: nn.Module, config: Any, tc: TrainConfig, seed: int, rank: int,
              device: torch.device) -> None:
        super().start(model, config, tc, seed, rank, device)
        self.mask_token = int(model.mask_token)
        self.mask_prob = tc.mask_prob if tc.mask_prob is not None else getattr(config, "mask_prob", 0.2)
        self.mask_last_prob = tc.mask_last_prob

    def windows(self, sequences: list[list[int]], max_len: int) -> torch.Tensor:
        self.inputs = item_windows(sequences, max_len)  # [W, max_len]
        return self.inputs

    def _pair(self, idx: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_batch(x, self.mask_token, self.mask_prob, self.mask_last_prob, self.mask_rng)  # [B, L] x2


class FitObjective(Objective):
    """The non-neural models: built from the training data, nothing to optimise."""

    name = "none"

    def build(self, model_cls: type, config: Any, split: Split) -> nn.Module:
        if hasattr(model_cls, "fit"):
            return model_cls.fit(config, split.train_sequences)
        if hasattr(model_cls, "from_counts"):
            return model_cls.from_counts(config, split.train_item_counts)
        return model_cls(config)

    def trainable(self, model: nn.Module) -> bool:
        return False

    def windows(self, sequences: list[list[int]], max_len: int) -> torch.Tensor:
        raise TypeError("a fitted model has no training windows")

    def _pair(self, idx: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError("a fitted model has no training batches")


OBJECTIVES: dict[str, type[Objective]] = {
    o.name: o for o in (NextItemObjective, MaskedObjective, FitObjective, GenerativeObjective)}


def objective_for(model_name: str) -> Objective:
    """A fresh objective for the module class's ``objective``; popularity (and any class without
    one and without trainable parameters) is ``"none"``, anything else defaults to ``"next_item"``."""
    _, model_cls = model_classes(model_name)
    name = getattr(model_cls, "objective", None)
    if name is None:
        name = "none" if model_cls is PopularityModel else "next_item"
    if name not in OBJECTIVES:
        raise ValueError(f"{model_name}: unknown objective {name!r}")
    return OBJECTIVES[name]()
