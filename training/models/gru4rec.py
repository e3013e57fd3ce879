"""GRU4Rec (Hidasi et al., 2016; Hidasi & Karatzoglou, 2018): a GRU over the item sequence.

The hidden state after step t predicts the item at t + 1 (``objective = "next_item"``), trained
with the loop's softmax cross-entropy, which is what the 2018 follow-up found best (with enough
negatives; here the full catalog).

Differences from the papers, each for a reason:
* whole user sequences in padded mini-batches instead of session-parallel mini-batches: it is the
  data layout every model here shares, and the loop already cuts long histories into windows;
* output embeddings are tied to the input item embeddings by default (``tied = True``): it halves
  the parameters and helps on sparse catalogs such as Amazon Beauty; ``tied = False`` gives the
  paper's separate output matrix (then the input embedding is a separate table too);
* one GRU layer by default: the papers found a single layer best, and deeper GRUs mostly add cost.

Left padding: a GRU is not invariant to leading padding steps (the state evolves through them:
biases, even with zero inputs), so each row is rotated to be right-aligned and run as a
``PackedSequence`` of its true length; the state at every real step then depends on real items
only, and padding steps output zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class GRU4RecConfig:
    n_items: int  # catalog size N; embeddings have N + 1 rows, row 0 is padding
    max_len: int = 50
    d_model: int = 64  # embedding size = GRU hidden size (so the output can be tied)
    n_layers: int = 1
    dropout: float = 0.25  # on the input embeddings and the final hidden states
    tied: bool = True
    loss: str = "full"  # "full" | "sampled", read by the training loop
    n_negatives: int = 256


def _rotate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Row b of ``x [B, L, ...]`` rotated left by ``shift[b]`` steps: out[b, t] = x[b, (t + shift[b]) % L]."""
    B, L = x.shape[:2]
    index = (torch.arange(L, device=x.device).unsqueeze(0) + shift.unsqueeze(1)) % L  # [B, L]
    if x.dim() == 3:
        index = index.unsqueeze(-1).expand(-1, -1, x.shape[2])  # [B, L, D]
    return torch.gather(x, 1, index)


class GRU4Rec(nn.Module):
    objective = "next_item"

    def __init__(self, config: GRU4RecConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.out_emb = None if config.tied else nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.d_model, config.d_model, num_layers=config.n_layers, batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.out_dropout = nn.Dropout(config.dropout)
        for emb in (self.item_emb, self.out_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, mean=0.0, std=0.02)
                with torch.no_grad():
                    emb.weight[0].zero_()

    @property
    def output_embeddings(self) -> torch.Tensor:
        """Scoring matrix ``[N + 1, D]``: the input embeddings when tied, else the output table."""
        return (self.item_emb if self.out_emb is None else self.out_emb).weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded with 0) -> hidden states ``[B, L, D]`` (zeros at padding)."""
        B, L = input_ids.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.config.max_len}")
        lengths = (input_ids != 0).sum(dim=1)  # [B]
        n_pad = L - lengths  # [B]
        right_ids = _rotate(input_ids, n_pad)  # [B, L], right-padded
        x = self.emb_dropout(self.item_emb(right_ids))  # [B, L, D]
        # An all-padding row still needs length >= 1 for packing; it reads one padding step, and
        # such rows are never trained on (no targets) nor meaningfully scored.
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=L)  # [B, L, D], right-padded
        h = _rotate(h, (L - n_pad) % L)  # [B, L, D], left-padded again (rotation by -n_pad)
        return self.out_dropout(h)  # [B, L, D]

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-item logits ``[B, N + 1]`` after the newest step; column 0 (padding) is -inf."""
        h = self.forward(input_ids)[:, -1, :]  # [B, D]
        logits = h @ self.output_embeddings.T  # [B, N + 1]
        logits[:, 0] = float("-inf")
        return logits
