"""Item co-visitation baseline: "people who interacted with i went on to j".

``fit`` counts, in every training sequence, each ordered pair ``(i -> j)`` where ``j`` follows
``i`` within the next ``window`` items, weighted ``1 / distance`` (the very next item counts most),
and keeps each item's ``n_neighbours`` strongest followers. ``score_last`` sums the neighbour rows
of the ``n_recent`` newest input items, the k-th newest weighted ``1 / k``, so the current item
dominates but the recent context still votes.

Only follow-ups count (not ``j -> i``): the task is the NEXT item, and the direction carries most
of the signal in sequential logs. Self pairs (consecutive duplicates) are skipped: already-seen
items are filtered out of recommendations anyway.

Items with no co-visitation signal get a tiny popularity prior (with a lower-index-first tie
break), smaller than any co-visitation contribution, so every ranking is strict and
deterministic and a user with no known neighbours gets the popular items.

State lives in buffers with shapes fixed by the config (``[N + 1, n_neighbours]``), so a checkpoint
loads into a freshly built ``CoVisitation(config)``; nothing is trainable (``objective = "none"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class CoVisitationConfig:
    n_items: int
    max_len: int = 50  # history window of the evaluation protocol; only the newest n_recent are used
    window: int = 5  # j counts as a follow-up of i if it comes at most `window` steps later
    n_neighbours: int = 100  # kept per item
    n_recent: int = 5  # newest input items that vote


class CoVisitation(nn.Module):
    objective = "none"

    def __init__(self, config: CoVisitationConfig):
        super().__init__()
        self.config = config
        M = config.n_neighbours
        self.register_buffer("neighbour_ids", torch.zeros(config.n_items + 1, M, dtype=torch.long))  # [N + 1, M]
        self.register_buffer("neighbour_weights", torch.zeros(config.n_items + 1, M))  # [N + 1, M]
        # float64 so "score + tiny prior" keeps the prior's tie break exact.
        self.register_buffer("prior", torch.zeros(config.n_items + 1, dtype=torch.float64))  # [N + 1]

    @classmethod
    def fit(cls, config: CoVisitationConfig, train_sequences: list[list[int]]) -> "CoVisitation":
        model = cls(config)
        N, M = config.n_items, config.n_neighbours
        seqs = [seq for seq in train_sequences if seq]
        flat = torch.tensor([i for seq in seqs for i in seq], dtype=torch.long)  # [T], all sequences end to end
        owner = torch.repeat_interleave(
            torch.arange(len(seqs)), torch.tensor([len(seq) for seq in seqs], dtype=torch.long)
        )  # [T], which sequence each step belongs to
        counts = torch.zeros(N + 1, dtype=torch.float64).index_add_(
            0, flat, torch.ones(flat.shape[0], dtype=torch.float64)
        )  # [N + 1]
        src_parts, dst_parts, w_parts = [], [], []
        for d in range(1, config.window + 1):
            same = owner[:-d] == owner[d:]  # [T - d], both steps in one sequence
            src_parts.append(flat[:-d][same])
            dst_parts.append(flat[d:][same])
            w_parts.append(torch.full((int(same.sum()),), 1.0 / d, dtype=torch.float64))
        src, dst, w = torch.cat(src_parts), torch.cat(dst_parts), torch.cat(w_parts)  # [P] x3
        keep = src != dst  # [P]
        src, dst, w = src[keep], dst[keep], w[keep]
        if src.numel():
            pair, inverse = torch.unique(src * (N + 1) + dst, return_inverse=True)  # [U], [P]
            weight = torch.zeros(pair.shape[0], dtype=torch.float64).index_add_(0, inverse, w)  # [U]
            p_src, p_dst = pair // (N + 1), pair % (N + 1)  # [U] x2
            # Order by (src asc, weight desc, dst asc) with stable sorts, least significant key first;
            # `pair` is already sorted by (src, dst), so one stable sort by -weight then by src suffices.
            order = torch.sort(-weight, stable=True).indices  # [U]
            order = order[torch.sort(p_src[order], stable=True).indices]  # [U]
            p_src, p_dst, weight = p_src[order], p_dst[order], weight[order]
            group_start = torch.searchsorted(p_src, p_src, side="left")  # [U]
            rank = torch.arange(p_src.shape[0]) - group_start  # [U], 0 = strongest follower
            top = rank < M  # [U]
            model.neighbour_ids[p_src[top], rank[top]] = p_dst[top]
            model.neighbour_weights[p_src[top], rank[top]] = weight[top].float()
        # The smallest co-visitation contribution is (1 / window) * (1 / n_recent); the whole prior
        # stays below a thousandth of it.
        smallest = 1.0 / (config.window * config.n_recent)
        tie_break = torch.arange(N + 1, 0, -1, dtype=torch.float64) / (N + 2)  # [N + 1], in (0, 1)
        prior = (counts + tie_break) / (counts.max() + 1.0) * (1e-3 * smallest)  # [N + 1]
        prior[0] = float("-inf")
        model.prior.copy_(prior)
        return model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.score_last(input_ids)

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded) -> ``[B, N + 1]`` float64 scores; column 0 is -inf."""
        B, L = input_ids.shape
        R = min(self.config.n_recent, L)
        recent = input_ids[:, L - R:]  # [B, R], newest last
        recency = 1.0 / torch.arange(R, 0, -1, device=input_ids.device, dtype=torch.float64)  # [R], newest = 1
        ids = self.neighbour_ids[recent]  # [B, R, M]; padding's row is all 0 with weight 0
        weights = self.neighbour_weights[recent].double() * recency[None, :, None]  # [B, R, M]
        scores = self.prior.unsqueeze(0).expand(B, -1).clone()  # [B, N + 1]
        scores.scatter_add_(1, ids.reshape(B, -1), weights.reshape(B, -1))  # [B, N + 1]
        scores[:, 0] = float("-inf")
        return scores
