"""SASRec (Kang & McAuley, 2018): causal self-attention over the user's item sequence.

Differences from the paper, each for a reason:
* pre-LN blocks (LayerNorm before attention / MLP, one final LayerNorm) train stably without
  warm-up, as in GPT-2 / nanoGPT;
* output scores are dot products with the (tied) input item embeddings over the full catalog,
  trained with full softmax cross-entropy (``training.losses``) instead of one sampled negative
  with BCE;
* positions are counted from the end of the sequence (0 = most recent item), so the last item
  gets the same positional embedding whether the batch is padded to 12 or 50 steps;
* with item side information (``n_attributes > 0``) an item's embedding is its ID embedding plus
  the mean of its attributes' embeddings, on the input and the (tied) output side alike, so
  items with few interactions borrow strength from their category and brand, and an item never
  seen in training still gets a meaningful score.

Sequences are left-padded with 0: the most recent item is always at the last position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SASRecConfig:
    n_items: int  # catalog size N; embeddings have N + 1 rows, row 0 is padding
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    # Read by the training loop: "full" softmax over the catalog, or "sampled" softmax against
    # n_negatives uniform shared negatives (training.losses). Defaults keep old checkpoints loadable.
    loss: str = "full"
    n_negatives: int = 256
    # Item side information (training.item_side): attribute ids 1..n_attributes, up to
    # attributes_per_item per item. 0: ID embeddings only. Filled from the split by the loop.
    n_attributes: int = 0
    attributes_per_item: int = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x [B, L, D]
        q = q.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, H, L, D/H]
        k = k.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, H, L, D/H]
        v = v.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, H, L, D/H]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, L, D/H]
        y = y.transpose(1, 2).contiguous().view(B, L, D)  # [B, L, D]
        return self.resid_dropout(self.proj(y))  # [B, L, D]


class FeedForward(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.proj = nn.Linear(4 * config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # [B, L, D]


class Block(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)  # [B, L, D]
        x = x + self.mlp(self.ln_2(x))  # [B, L, D]
        return x


def init_transformer_weights(model: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases and padding rows; residual
    projections scaled down with depth so the residual stream's variance stays put."""

    def init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    model.apply(init)
    for name, p in model.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))


class SASRec(nn.Module):
    objective = "next_item"  # the hidden state at step t predicts the item at t + 1

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        if config.n_attributes > 0:
            self.attr_emb = nn.Embedding(config.n_attributes + 1, config.d_model, padding_idx=0)
            self.register_buffer("item_attributes", torch.zeros(
                config.n_items + 1, max(1, config.attributes_per_item), dtype=torch.long))  # [N + 1, A]
            # 1 for items with training interactions. The others have no ID embedding: the full
            # softmax would only ever push it down (they are never a training target), burying the
            # very items side information is there to rank; their vector is their attributes.
            self.register_buffer("has_id_embedding", torch.ones(config.n_items + 1))  # [N + 1]
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        init_transformer_weights(self, config.n_layers)

    @classmethod
    def from_split(cls, config: SASRecConfig, split) -> "SASRec":
        """A fresh model whose attribute table is the split's (``split.item_attributes``)."""
        model = cls(config)
        side = getattr(split, "item_attributes", None)
        if config.n_attributes > 0 and side is not None:
            width = min(model.item_attributes.shape[1], side.table.shape[1])
            model.item_attributes[:, :width] = side.table[:, :width]
            trained = torch.zeros(config.n_items + 1)  # [N + 1]
            trained[[i for i, n in split.train_item_counts.items() if n > 0 and 0 < i <= config.n_items]] = 1.0
            model.has_id_embedding.copy_(trained)
        return model

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids [...]`` -> item embeddings ``[..., D]``: ID (for items seen in training) + mean
        attribute embedding."""
        vectors = self.item_emb(ids)  # [..., D]
        if self.config.n_attributes > 0:
            vectors = vectors * self.has_id_embedding[ids].unsqueeze(-1)  # [..., D]
            attrs = self.item_attributes[ids]  # [..., A]
            present = (attrs != 0).unsqueeze(-1).to(vectors.dtype)  # [..., A, 1]
            summed = (self.attr_emb(attrs) * present).sum(dim=-2)  # [..., D]
            vectors = vectors + summed / present.sum(dim=-2).clamp(min=1.0)  # [..., D]
        return vectors

    @property
    def output_embeddings(self) -> torch.Tensor:
        """Tied scoring matrix ``[N + 1, D]``: an item's score is <hidden, its input embedding>."""
        if self.config.n_attributes > 0:
            return self.item_vectors(torch.arange(self.config.n_items + 1, device=self.item_emb.weight.device))
        return self.item_emb.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded with 0, L <= max_len) -> hidden states ``[B, L, D]``."""
        B, L = input_ids.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.config.max_len}")
        positions = torch.arange(L - 1, -1, -1, device=input_ids.device)  # [L], 0 = most recent
        x = self.item_vectors(input_ids) * math.sqrt(self.config.d_model)  # [B, L, D]
        x = self.emb_dropout(x + self.pos_emb(positions))  # [B, L, D]
        x = x * (input_ids != 0).unsqueeze(-1).to(x.dtype)  # [B, L, D], padding steps carry nothing

        causal = torch.ones(L, L, dtype=torch.bool, device=input_ids.device).tril()  # [L, L]
        is_item = (input_ids != 0)[:, None, None, :]  # [B, 1, 1, L], keys that are items
        diagonal = torch.eye(L, dtype=torch.bool, device=input_ids.device)  # [L, L]
        # A padding query has no item key to attend to; letting every step see itself keeps its
        # softmax defined (no NaN) without leaking anything, since padding rows are never scored.
        attn_mask = causal & (is_item | diagonal)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, attn_mask)  # [B, L, D]
        return self.ln_f(x)  # [B, L, D]

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-item logits after the last (most recent) step: ``[B, n_items + 1]``; column 0
        (padding) is -inf because padding is never a recommendation."""
        h = self.forward(input_ids)[:, -1, :]  # [B, D]
        logits = h @ self.output_embeddings.T  # [B, N + 1]
        logits[:, 0] = float("-inf")
        return logits
