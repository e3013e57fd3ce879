"""Constrained beam search over semantic ids: the decoding half of :mod:`training.models.tiger`.

Only code tuples of real items can be generated: at every step the codes that do not continue
some item's tuple are masked out (:class:`CodeTrie`, sorted prefix keys searched on the device,
no Python per beam), and the step's softmax is renormalised over the codes that remain. Keys and
values are cached, so each step runs the decoder on one new token per beam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:  # the model imports this module; the annotation only needs the name
    from training.models.tiger import TIGER


class CodeTrie(NamedTuple):
    """The valid code tuples as sorted prefix keys (mixed radix over ``sizes``): at depth s, the
    prefixes of length s (``prefixes[s] [P_s]``) and which next codes continue them
    (``allowed[s] [P_s, V_s]``); the full tuples' keys (``keys [N]``) and their items (``items [N]``)."""

    sizes: list[int]
    prefixes: list[torch.Tensor]
    allowed: list[torch.Tensor]
    keys: torch.Tensor
    items: torch.Tensor

    @classmethod
    def build(cls, codes: torch.Tensor, sizes: list[int]) -> "CodeTrie":
        rows = codes[1:]  # [N, P], padding row dropped
        key = torch.zeros(rows.shape[0], dtype=torch.long, device=codes.device)  # [N]
        prefixes, allowed = [], []
        for s, size in enumerate(sizes):
            unique, inverse = torch.unique(key, return_inverse=True)  # [P_s], [N]
            table = torch.zeros(len(unique), size, dtype=torch.bool, device=codes.device)  # [P_s, V_s]
            table[inverse, rows[:, s]] = True
            prefixes.append(unique)
            allowed.append(table)
            key = key * size + rows[:, s]
        keys, order = torch.sort(key)  # [N] x2
        return cls(sizes, prefixes, allowed, keys, order + 1)

    def _key(self, prefix: torch.Tensor) -> torch.Tensor:
        key = torch.zeros(prefix.shape[:-1], dtype=torch.long, device=prefix.device)  # [...]
        for s in range(prefix.shape[-1]):
            key = key * self.sizes[s] + prefix[..., s]
        return key

    @staticmethod
    def _find(sorted_keys: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.searchsorted(sorted_keys, key.flatten()).clamp(max=len(sorted_keys) - 1).view(key.shape)
        return pos, sorted_keys[pos] == key

    def next_codes(self, prefix: torch.Tensor) -> torch.Tensor:
        """``prefix [B, G, s]`` -> ``[B, G, V_s]``: the codes that continue it to a real item
        (none for a prefix of no item)."""
        pos, found = self._find(self.prefixes[prefix.shape[-1]], self._key(prefix))  # [B, G] x2
        return self.allowed[prefix.shape[-1]][pos] & found.unsqueeze(-1)

    def item_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Full tuples ``[B, G, P]`` -> item indices ``[B, G]`` (0 where no item has the tuple)."""
        pos, found = self._find(self.keys, self._key(codes))  # [B, G] x2
        return torch.where(found, self.items[pos], torch.zeros_like(pos))



def _reorder(t: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """A cache ``[B * G, ...]`` -> ``[B * W, ...]``: the rows of each new beam's parent."""
    B, W = parent.shape
    rows = t.view(B, -1, *t.shape[1:])  # [B, G, ...]
    return rows[torch.arange(B, device=t.device)[:, None], parent].reshape(B * W, *t.shape[1:])


@torch.no_grad()
def beam_search(model: "TIGER", input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids [B, L]`` -> (items ``[B, W]``, their log-probabilities ``[B, W]``, -inf for a
    beam that ends on no item), best first; W = ``beam_size``, fewer for a tiny catalog.

    A beam's score is the sum over its codes of the log-softmax renormalised over the allowed
    codes, so it is the item's probability under the model with the rest of the code space ruled
    out; with a beam at least as wide as the catalog every item is scored and the probabilities
    sum to one.
    """
    config, P = model.config, model.n_codes
    x = input_ids[:, -config.max_items:]  # [B, L]
    B, L = x.shape
    memory = model(x)  # [B, L * P, D]
    visible = x != 0  # [B, L]
    visible[:, -1] = True  # an empty history still gets a defined (if uninformed) answer
    cross = visible.repeat_interleave(P, dim=1)[:, None, None, :]  # [B, 1, 1, L * P]
    memory_kv = [block.cross_attn.keys_values(memory) for block in model.decoder]  # [B, H, L * P, D/H] x2 each
    caches: list = [None] * len(model.decoder)
    trie = model.trie()
    scores = torch.zeros(B, 1, device=x.device)  # [B, G], each beam's log-probability
    prefix = torch.zeros(B, 1, 0, dtype=torch.long, device=x.device)  # [B, G, s], raw codes
    token = torch.full((B, 1), model.bos, dtype=torch.long, device=x.device)  # [B, G]
    for s, size in enumerate(config.code_sizes):
        G = prefix.shape[1]
        hidden, caches = model.decode_step(token, s, caches, memory_kv, cross)  # [B, G, D]
        allowed = trie.next_codes(prefix)  # [B, G, V_s]
        logits = model.code_logits(hidden, s).float().masked_fill(~allowed, float("-inf"))  # [B, G, V_s]
        # A dead beam (no allowed code: the catalog had fewer tuples than beams) stays -inf, not NaN.
        logp = (logits - logits.logsumexp(dim=-1, keepdim=True)).masked_fill(~allowed, float("-inf"))
        candidates = (scores.unsqueeze(-1) + logp).reshape(B, G * size)  # [B, G * V_s]
        scores, index = candidates.topk(min(config.beam_size, G * size), dim=1)  # [B, W] x2
        parent, code = index // size, index % size  # [B, W] x2
        prefix = torch.cat([prefix.gather(1, parent.unsqueeze(-1).expand(-1, -1, s)), code.unsqueeze(-1)],
                           dim=-1)  # [B, W, s + 1]
        caches = [(_reorder(k, parent), _reorder(v, parent)) for k, v in caches]
        token = code + model.code_offsets[s]  # [B, W]
    items = trie.item_of(prefix)  # [B, W]
    return items, scores.masked_fill(items == 0, float("-inf"))
