"""Sequence-kNN, V-SKNN style (Ludewig & Jannach, 2018, "Evaluation of session-based
recommendation algorithms"): recommend what the most similar training sequences contain.

For the current sequence of length n, the item at position p (1 = oldest, n = newest) weighs
``p / n`` (linear decay: recent items matter more; a repeated item keeps its newest weight). A
training sequence's similarity is the sum of the weights of the items it shares with the current
one (the ``vec`` similarity of the reference code, without its division by n, which does not
change any ranking). The ``k`` most similar training sequences are the neighbours; an item's
score is the sum of the similarities of the neighbours that contain it.

Differences from V-SKNN, each for a reason:
* no sampling of the m most recent candidate sequences: the sequences carry no timestamps here,
  and one sparse matrix product scores every training sequence at once, exactly (256 random
  50-item users x 22k sequences over 12k items: ~0.7 s on a busy 2-core CPU), so there is
  nothing to approximate;
* a training sequence is represented by its ``max_len`` most recent DISTINCT items (the
  neighbour side only ever uses the item set), stored left-padded in the ``sequences`` buffer;
* items no neighbour contains get a tiny popularity prior, so every ranking is strict and
  deterministic.

``n_sequences`` (the number of training sequences) is a config field so ``SKNN(config)`` has the
buffer shapes of the fitted model and a checkpoint loads into it. The item -> sequence index is a
sparse matrix rebuilt lazily from the ``sequences`` buffer (not saved).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SKNNConfig:
    n_items: int
    max_len: int = 50  # items kept per training sequence, and per current sequence
    n_sequences: int = 0  # set by fit()
    k: int = 100  # neighbour sequences


class SKNN(nn.Module):
    objective = "none"

    def __init__(self, config: SKNNConfig):
        super().__init__()
        self.config = config
        # [S, max_len]: the distinct items of each training sequence, newest last, left-padded.
        self.register_buffer("sequences", torch.zeros(config.n_sequences, config.max_len, dtype=torch.long))
        self.register_buffer("prior", torch.zeros(config.n_items + 1, dtype=torch.float64))  # [N + 1]
        self._incidence: torch.Tensor | None = None  # sparse CSR [S, N + 1], built on first use
        self.register_load_state_dict_post_hook(lambda module, _keys: setattr(module, "_incidence", None))

    @classmethod
    def fit(cls, config: SKNNConfig, train_sequences: list[list[int]]) -> "SKNN":
        rows = []
        for seq in train_sequences:
            seen: dict[int, None] = {}
            for item in reversed(seq):  # newest first, so the newest occurrence is the one kept
                if item not in seen:
                    seen[item] = None
                    if len(seen) == config.max_len:
                        break
            if seen:
                rows.append(list(reversed(seen)))  # oldest first
        # In place on purpose: a caller that saves ``asdict(config)`` next to the state dict (the
        # loop's checkpoint) then records the buffer shape a fresh SKNN(config) must have.
        config.n_sequences = len(rows)
        model = cls(config)
        counts = torch.zeros(config.n_items + 1, dtype=torch.float64)  # [N + 1]
        for r, items in enumerate(rows):
            model.sequences[r, config.max_len - len(items):] = torch.tensor(items, dtype=torch.long)
        for seq in train_sequences:
            counts.index_add_(0, torch.tensor(seq, dtype=torch.long), torch.ones(len(seq), dtype=torch.float64))
        # A neighbour's similarity is >= 1/max_len (one shared item at the oldest slot); the whole
        # prior stays below a thousandth of that.
        tie_break = torch.arange(config.n_items + 1, 0, -1, dtype=torch.float64) / (config.n_items + 2)  # [N + 1]
        prior = (counts + tie_break) / (counts.max() + 1.0) * (1e-3 / config.max_len)  # [N + 1]
        prior[0] = float("-inf")
        model.prior.copy_(prior)
        return model

    def _index(self) -> torch.Tensor:
        """Sparse CSR incidence ``[S, N + 1]``: 1 where training sequence s contains item i."""
        device = self.sequences.device
        if self._incidence is None or self._incidence.device != device:
            S, T = self.sequences.shape
            rows = torch.arange(S, device=device).repeat_interleave(T)  # [S * T]
            cols = self.sequences.reshape(-1)  # [S * T]
            real = cols != 0  # [S * T]
            indices = torch.stack([rows[real], cols[real]])  # [2, nnz]
            values = torch.ones(indices.shape[1], device=device)  # [nnz]
            coo = torch.sparse_coo_tensor(
                indices, values, (S, self.config.n_items + 1), check_invariants=False
            ).coalesce()
            with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and it works
                warnings.simplefilter("ignore", UserWarning)
                self._incidence = coo.to_sparse_csr()
        return self._incidence

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.score_last(input_ids)

    @torch.no_grad()
    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded) -> ``[B, N + 1]`` float64 scores; column 0 is -inf."""
        input_ids = input_ids[:, -self.config.max_len:]  # [B, L]
        B, L = input_ids.shape
        N = self.config.n_items
        device = input_ids.device
        scores = self.prior.unsqueeze(0).expand(B, -1).clone()  # [B, N + 1]
        S = self.sequences.shape[0]
        if S == 0:
            scores[:, 0] = float("-inf")
            return scores
        is_item = input_ids != 0  # [B, L]
        n = is_item.sum(dim=1, keepdim=True)  # [B, 1]
        # Weights p (not p / n) keep every similarity an integer, exact in float32 (<= L(L+1)/2),
        # so equal similarities really are equal and topk's choice among them is reproducible;
        # the 1 / n is applied to the neighbours' contributions below.
        position = torch.arange(1, L + 1, device=device).unsqueeze(0) - (L - n)  # [B, L], 1 = oldest item
        weight = (position * is_item).float()  # [B, L], linear decay
        query = torch.zeros(B, N + 1, device=device)  # [B, N + 1]
        query.scatter_reduce_(1, input_ids, weight, reduce="amax")  # [B, N + 1], a repeat keeps its newest weight
        query[:, 0] = 0.0
        sims = self._index() @ query.T  # [S, B], kept sequence-major: topk runs down contiguous columns
        k = min(self.config.k, S)
        top_sims, top_rows = sims.topk(k, dim=0)  # [k, B] x2
        top_sims = top_sims.T.double() / n.clamp(min=1).double()  # [B, k]
        neighbours = self.sequences[top_rows.T]  # [B, k, max_len]
        contrib = top_sims.unsqueeze(-1).expand_as(neighbours)  # [B, k, max_len]
        # A sequence sharing nothing has similarity 0 and adds nothing; padding lands in column 0.
        scores.scatter_add_(1, neighbours.reshape(B, -1), contrib.reshape(B, -1))  # [B, N + 1]
        scores[:, 0] = float("-inf")
        return scores
