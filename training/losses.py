"""Softmax cross-entropy losses over the catalog at every non-padding position.

SASRec's original objective (BCE against one sampled negative per position) is a weak, noisy
estimate of the ranking task it is evaluated on; the full softmax pushes the target above every
other item at once and is markedly better on full-catalog metrics (Klenitskiy & Vasilev, "Turning
Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023). The catalog of this
platform fits in memory, so the full softmax is the default; ``sampled_softmax_loss`` (uniform
shared negatives) is there for larger catalogs, selected by a model config's ``loss = "sampled"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_loss(
    hidden: torch.Tensor, targets: torch.Tensor, output_embeddings: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the next item over the catalog.

    hidden ``[B, L, D]``, targets ``[B, L]`` (0 = padding, ignored), output_embeddings
    ``[N + 1, D]`` (row 0 = padding, never a valid class). Only non-padding positions are
    scored, which keeps the ``[positions, N + 1]`` logits as small as the data allows.
    """
    is_target = targets != 0  # [B, L]
    h = hidden[is_target]  # [M, D]
    y = targets[is_target]  # [M]
    if y.numel() == 0:
        raise ValueError("a batch without any target position has no loss")
    logits = h @ output_embeddings.T  # [M, N + 1]
    logits = logits.float()  # [M, N + 1], the softmax in fp32 even under bf16 autocast
    logits[:, 0] = float("-inf")  # padding is not an item
    return F.cross_entropy(logits, y)


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    output_embeddings: torch.Tensor,
    n_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy of the target against ``n_negatives`` items shared by the whole batch.

    For catalogs too large for the full softmax (or to trade accuracy for speed). The negatives
    are drawn uniformly WITHOUT replacement from items ``1..N``: every item then has the same
    inclusion probability ``n_negatives / N``, so the logQ correction of sampled softmax is a
    constant that cancels in the softmax and is omitted. A negative equal to a position's own
    target (an "accidental hit") is masked out for that position, so the target is never pushed
    against itself. With ``n_negatives >= N`` every item is a negative and the loss IS the full
    softmax loss.

    hidden ``[B, L, D]``, targets ``[B, L]`` (0 = padding, ignored), output_embeddings
    ``[N + 1, D]`` (row 0 = padding, never sampled). ``generator`` seeds the draw (it may live
    on the CPU while the tensors are on an accelerator).
    """
    if n_negatives < 1:
        raise ValueError("n_negatives must be >= 1")
    is_target = targets != 0  # [B, L]
    h = hidden[is_target]  # [M, D]
    y = targets[is_target]  # [M]
    if y.numel() == 0:
        raise ValueError("a batch without any target position has no loss")
    n_items = output_embeddings.shape[0] - 1
    if n_negatives >= n_items:
        negatives = torch.arange(1, n_items + 1, device=hidden.device)  # [K], K = N
    else:
        sample_device = generator.device if generator is not None else torch.device("cpu")
        perm = torch.randperm(n_items, generator=generator, device=sample_device)  # [N]
        negatives = (perm[:n_negatives] + 1).to(hidden.device)  # [K]
    positive_logits = (h * output_embeddings[y]).sum(dim=-1, keepdim=True)  # [M, 1]
    negative_logits = h @ output_embeddings[negatives].T  # [M, K]
    logits = torch.cat([positive_logits, negative_logits], dim=1).float()  # [M, 1 + K], fp32 softmax
    accidental_hit = negatives.unsqueeze(0) == y.unsqueeze(1)  # [M, K]
    logits[:, 1:] = logits[:, 1:].masked_fill(accidental_hit, float("-inf"))  # [M, 1 + K]
    zeros = torch.zeros(y.shape[0], dtype=torch.long, device=hidden.device)  # [M], the positive is class 0
    return F.cross_entropy(logits, zeros)
