"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained with the Cloze objective.

Training (done by the shared loop, ``objective = "masked"``): a random ``mask_prob`` share of the
non-padding input positions is replaced by ``mask_token`` and the model predicts the original
items at exactly those positions. Inference (``score_last``): a ``[MASK]`` is appended after the
most recent item and its hidden state scores the catalog, as in the paper.

Differences from the paper, each for a reason:
* pre-LN blocks (the same ``Block`` as SASRec, given a bidirectional mask instead of a causal
  one) train stably without warm-up;
* output scores are plain dot products with the tied item embeddings (no extra
  Linear-GELU-LayerNorm head and output bias): fewer parameters on small catalogs, and the same
  scoring rule as every other neural model here, so ``output_embeddings`` is a plain matrix;
* positions are counted from the end of the sequence (0 = the newest step), so left padding of any
  width gives identical scores.

The item embedding table has ``N + 2`` rows: 0 = padding, ``1..N`` = items, ``N + 1`` = [MASK].
The mask row is an input symbol only; it is never a class (``output_embeddings`` stops at N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.models.sasrec import Block, init_transformer_weights


@dataclass
class BERT4RecConfig:
    n_items: int  # catalog size N
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    mask_prob: float = 0.2  # share of non-padding positions the loop replaces by [MASK]
    loss: str = "full"  # "full" | "sampled", read by the training loop
    n_negatives: int = 256


class BERT4Rec(nn.Module):
    objective = "masked"

    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        if not 0.0 < config.mask_prob < 1.0:
            raise ValueError("mask_prob must be in (0, 1)")
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 2, config.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        init_transformer_weights(self, config.n_layers)

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    @property
    def output_embeddings(self) -> torch.Tensor:
        """Tied scoring matrix ``[N + 1, D]``, without the [MASK] row (not a recommendable item)."""
        return self.item_emb.weight[: self.config.n_items + 1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded with 0, may contain ``mask_token``) -> ``[B, L, D]``."""
        B, L = input_ids.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.config.max_len}")
        positions = torch.arange(L - 1, -1, -1, device=input_ids.device)  # [L], 0 = most recent
        x = self.item_emb(input_ids) * math.sqrt(self.config.d_model)  # [B, L, D]
        x = self.emb_dropout(x + self.pos_emb(positions))  # [B, L, D]
        is_item = input_ids != 0  # [B, L], items and [MASK]s
        x = x * is_item.unsqueeze(-1).to(x.dtype)  # [B, L, D]

        diagonal = torch.eye(L, dtype=torch.bool, device=input_ids.device)  # [L, L]
        # Every step sees every non-padding step, in both directions; a padding query sees only
        # itself so its softmax stays defined (padding rows are never scored).
        attn_mask = is_item[:, None, None, :] | diagonal  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, attn_mask)  # [B, L, D]
        return self.ln_f(x)  # [B, L, D]

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-item logits ``[B, N + 1]`` read at a [MASK] appended after the newest item (the
        oldest step is dropped when the input is already ``max_len`` long); column 0 is -inf."""
        B, L = input_ids.shape
        mask = torch.full((B, 1), self.mask_token, dtype=input_ids.dtype, device=input_ids.device)  # [B, 1]
        keep = input_ids if L < self.config.max_len else input_ids[:, 1:]  # [B, L'] with L' + 1 <= max_len
        x = torch.cat([keep, mask], dim=1)  # [B, L' + 1]
        h = self.forward(x)[:, -1, :]  # [B, D]
        logits = h @ self.output_embeddings.T  # [B, N + 1]
        logits[:, 0] = float("-inf")
        return logits
