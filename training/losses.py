"""Full softmax cross-entropy over the whole catalog at every non-padding position.

SASRec's original objective (BCE against one sampled negative per position) is a weak, noisy
estimate of the ranking task it is evaluated on; the full softmax pushes the target above every
other item at once and is markedly better on full-catalog metrics (Klenitskiy & Vasilev, "Turning
Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023). The catalog of this
platform fits in memory, so no sampling is needed.
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
