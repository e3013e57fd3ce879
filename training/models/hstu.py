"""HSTU (Zhai et al., 2024, "Actions Speak Louder than Words"): Hierarchical Sequential
Transduction Units, a causal sequence encoder with pointwise (softmax-free) attention.

Each layer, for ``x [B, L, D]``::

    U, V, Q, K = Split(SiLU(f1(LayerNorm(x))))
    A = SiLU(Q K^T + rab) / n        (causal, padding keys masked out; no softmax)
    Y = f2(Dropout(LayerNorm(A V) * U)) + x

as in Meta's reference (generative-recommenders, ``SequentialTransductionUnitJagged``):
``f1`` is one bias-free projection, ``n`` is ``max_len`` (``attn_norm = "max_len"``, the reference)
or the number of keys each query may see (``attn_norm = "valid"``, reported to work slightly
better on small data); either is independent of the batch's padded width, so left padding of any
width gives identical scores. There is no 1/sqrt(d) scale, as in the reference.

Relative attention bias ``rab``: a learned scalar per causal distance ``i - j`` (``0..max_len-1``),
always; plus a learned scalar per log-bucketed time gap ``|t_i - t_j|`` (``floor(ln(gap) / 0.301)``
clamped to ``n_time_buckets``, the reference's bucketisation) only when ``forward`` gets
``timestamps``. The reference buckets the gap to the query's NEXT timestamp; we use the query's own
timestamp, which exists at the last step too without knowing when the next action happens.

Differences from the reference, each for a reason:
* inputs are item embeddings * sqrt(D) plus learned positions counted from the end (0 = newest),
  like SASRec here, instead of positions from the start of a jagged sequence: left-padding invariant;
* the final hidden state goes through a LayerNorm instead of an L2 normalisation: the loop scores
  with unnormalised dot products against tied embeddings and no temperature, as for SASRec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class HSTUConfig:
    n_items: int  # catalog size N; embeddings have N + 1 rows, row 0 is padding
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2  # per-head Q/K and U/V widths are d_model // n_heads
    n_layers: int = 2
    dropout: float = 0.2
    attn_norm: str = "max_len"  # "max_len" (reference) | "valid" (number of visible keys)
    n_time_buckets: int = 128
    loss: str = "full"  # "full" | "sampled", read by the training loop
    n_negatives: int = 256


class RelativeBias(nn.Module):
    """``rab [B or 1, 1, L, L]``: a scalar per causal distance, plus one per time-gap bucket."""

    def __init__(self, config: HSTUConfig):
        super().__init__()
        self.pos_w = nn.Parameter(torch.empty(config.max_len).normal_(mean=0.0, std=0.02))  # [max_len]
        self.time_w = nn.Parameter(torch.empty(config.n_time_buckets + 1).normal_(mean=0.0, std=0.02))
        self.n_time_buckets = config.n_time_buckets

    def forward(self, L: int, timestamps: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        steps = torch.arange(L, device=device)  # [L]
        distance = (steps.unsqueeze(1) - steps.unsqueeze(0)).clamp(min=0)  # [L, L], i - j; j > i is masked anyway
        bias = self.pos_w[distance][None, None]  # [1, 1, L, L]
        if timestamps is not None:
            gap = (timestamps.unsqueeze(2) - timestamps.unsqueeze(1)).abs().float()  # [B, L, L]
            bucket = (torch.log(gap.clamp(min=1.0)) / 0.301).long().clamp(0, self.n_time_buckets)  # [B, L, L]
            bias = bias + self.time_w[bucket].unsqueeze(1)  # [B, 1, L, L]
        return bias


class HSTULayer(nn.Module):
    def __init__(self, config: HSTUConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        self.n_heads = config.n_heads
        self.attn_norm = config.attn_norm
        self.max_len = config.max_len
        self.ln_in = nn.LayerNorm(config.d_model)
        self.uvqk = nn.Linear(config.d_model, 4 * config.d_model, bias=False)  # f1
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)  # f2
        self.dropout = nn.Dropout(config.dropout)
        self.rab = RelativeBias(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, timestamps: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        H = self.n_heads
        u, v, q, k = F.silu(self.uvqk(self.ln_in(x))).split(D, dim=2)  # 4 x [B, L, D]
        q = q.view(B, L, H, D // H).transpose(1, 2)  # [B, H, L, D/H]
        k = k.view(B, L, H, D // H).transpose(1, 2)  # [B, H, L, D/H]
        v = v.view(B, L, H, D // H).transpose(1, 2)  # [B, H, L, D/H]
        scores = q @ k.transpose(-2, -1) + self.rab(L, timestamps, x.device)  # [B, H, L, L]
        if self.attn_norm == "max_len":
            norm = torch.full((1, 1, 1, 1), float(self.max_len), device=x.device)  # [1, 1, 1, 1]
        else:
            norm = mask.sum(dim=-1, keepdim=True).clamp(min=1).to(scores.dtype)  # [B, 1, L, 1]
        attn = F.silu(scores) / norm * mask.to(scores.dtype)  # [B, H, L, L]
        y = (attn @ v).transpose(1, 2).contiguous().view(B, L, D)  # [B, L, D]
        return x + self.proj(self.dropout(self.ln_attn(y) * u))  # [B, L, D]


class HSTU(nn.Module):
    objective = "next_item"

    def __init__(self, config: HSTUConfig):
        super().__init__()
        if config.attn_norm not in ("max_len", "valid"):
            raise ValueError(f"attn_norm must be 'max_len' or 'valid', not {config.attn_norm!r}")
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(HSTULayer(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def output_embeddings(self) -> torch.Tensor:
        """Tied scoring matrix ``[N + 1, D]``."""
        return self.item_emb.weight

    def forward(self, input_ids: torch.Tensor, timestamps: torch.Tensor | None = None) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded with 0), optional ``timestamps [B, L]`` (seconds,
        any value at padding) -> hidden states ``[B, L, D]``."""
        B, L = input_ids.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.config.max_len}")
        positions = torch.arange(L - 1, -1, -1, device=input_ids.device)  # [L], 0 = most recent
        is_item = input_ids != 0  # [B, L]
        x = self.item_emb(input_ids) * math.sqrt(self.config.d_model)  # [B, L, D]
        x = self.emb_dropout(x + self.pos_emb(positions))  # [B, L, D]
        x = x * is_item.unsqueeze(-1).to(x.dtype)  # [B, L, D]
        causal = torch.ones(L, L, dtype=torch.bool, device=input_ids.device).tril()  # [L, L]
        # Pointwise attention needs no "see yourself" fallback: a padding query sums over nothing.
        mask = causal & is_item[:, None, None, :]  # [B, 1, L, L]
        for layer in self.layers:
            x = layer(x, mask, timestamps)  # [B, L, D]
        return self.ln_f(x)  # [B, L, D]

    def score_last(self, input_ids: torch.Tensor, timestamps: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item logits ``[B, N + 1]`` after the newest step; column 0 (padding) is -inf."""
        h = self.forward(input_ids, timestamps)[:, -1, :]  # [B, D]
        logits = h @ self.output_embeddings.T  # [B, N + 1]
        logits[:, 0] = float("-inf")
        return logits
