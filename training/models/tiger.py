"""TIGER-style generative retrieval (Rajput et al., "Recommender Systems with Generative
Retrieval", NeurIPS 2023): items are tuples of semantic-id codes (:mod:`training.semantic_ids`),
an encoder reads the user's items as code tokens, and a decoder generates the next item's code
tuple, one code at a time; beam search restricted to the tuples of real items ranks the catalog.

Differences from the paper, each for a reason:
* own pre-LN transformer blocks (as :mod:`training.models.sasrec`) instead of T5, and no user-id
  token (the loop's inputs are item sequences only);
* the encoder is causal at item granularity (an item's code tokens see their own item's tokens
  and earlier items'), and the decoder for step t cross-attends to items <= t only, so one pass
  over a window trains every transition in it, the way the shared loop trains SASRec; TIGER
  encodes each prefix bidirectionally, one target per prefix;
* semantic ids come from attributes and co-visitation by residual k-means, not from text
  embeddings by an RQ-VAE (see :mod:`training.semantic_ids`).

Scores: ``score_last`` returns, for the ``beam_size`` items the constrained beam search ends on,
their sequence log-probability (each step's softmax renormalised over the codes that continue a
real item, so the scores of all items would sum to one in probability); every other item is -inf.
The code table is a buffer of shape ``[N + 1, levels + 1]`` fixed by the config, so a checkpoint's
``state_dict`` rebuilds the model; :meth:`TIGER.from_split` computes it from training data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.models.sasrec import FeedForward, init_transformer_weights
from training.models.tiger_search import CodeTrie, beam_search
from training.semantic_ids import SemanticIdConfig, semantic_ids

log = logging.getLogger(__name__)


@dataclass
class TIGERConfig:
    n_items: int  # catalog size N; the code table has N + 1 rows, row 0 is padding
    max_len: int = 50  # the split's history length (inputs longer than max_items are cut)
    max_items: int = 20  # most recent items the encoder reads (TIGER: 20)
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2  # encoder blocks
    n_decoder_layers: int = 2
    dropout: float = 0.1
    beam_size: int = 20  # items scored per user; >= 20 so that HR@20 means something
    # Semantic ids (training.semantic_ids.SemanticIdConfig): codes per level, levels, and the
    # vocabulary of the collision code, i.e. the largest group of items sharing ``levels`` codes.
    codebook_size: int = 256
    levels: int = 3
    collision_codes: int = 128
    attribute_dim: int = 32
    cooc_dim: int = 32
    cooc_window: int = 3
    id_seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        if self.beam_size < 1 or self.max_items < 1 or self.collision_codes < 1:
            raise ValueError("beam_size, max_items and collision_codes must be >= 1")

    @property
    def code_sizes(self) -> list[int]:
        """Vocabulary of each code position: ``levels`` codebooks, then the collision code."""
        return [self.codebook_size] * self.levels + [self.collision_codes]

    def semantic_id_config(self) -> SemanticIdConfig:
        return SemanticIdConfig(codebook_size=self.codebook_size, levels=self.levels,
                                attribute_dim=self.attribute_dim, cooc_dim=self.cooc_dim,
                                cooc_window=self.cooc_window, seed=self.id_seed)


class Attention(nn.Module):
    """Multi-head attention of queries ``x`` over ``source`` (self-attention: the same tensor).

    No dropout on the attention weights: drawing its mask over ``[B, H, Q, K]`` costs more than
    the attention itself on a CPU, and the residual and embedding dropout regularise anyway.
    """

    def __init__(self, config: TIGERConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.q = nn.Linear(config.d_model, config.d_model)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_dropout = nn.Dropout(config.dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, S, D = t.shape
        return t.view(B, S, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, H, S, D/H]

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``source [B, K, D]`` -> keys, values ``[B, H, K, D/H]`` (cached by the beam search)."""
        k, v = self.kv(source).split(source.shape[-1], dim=2)  # [B, K, D] x2
        return self._heads(k), self._heads(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool = False) -> torch.Tensor:
        B, Q, D = x.shape
        y = F.scaled_dot_product_attention(self._heads(self.q(x)), k, v, attn_mask=mask,
                                           is_causal=causal)  # [B, H, Q, D/H]
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, Q, D)))  # [B, Q, D]

    def forward(self, x: torch.Tensor, source: torch.Tensor, mask: torch.Tensor | None,
                causal: bool = False) -> torch.Tensor:
        return self.attend(x, *self.keys_values(source), mask, causal)  # [B, Q, D]


class EncoderBlock(nn.Module):
    def __init__(self, config: TIGERConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(config.d_model), Attention(config)
        self.ln_2, self.mlp = nn.LayerNorm(config.d_model), FeedForward(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)  # [B, T, D]
        x = x + self.attn(h, h, mask)  # [B, T, D]
        return x + self.mlp(self.ln_2(x))  # [B, T, D]


class DecoderBlock(nn.Module):
    """Self-attention within each group's code tokens (causal), cross-attention from all groups'
    tokens at once to the encoder memory (what each group may see is in ``cross_mask``)."""

    def __init__(self, config: TIGERConfig):
        super().__init__()
        self.ln_1, self.self_attn = nn.LayerNorm(config.d_model), Attention(config)
        self.ln_2, self.cross_attn = nn.LayerNorm(config.d_model), Attention(config)
        self.ln_3, self.mlp = nn.LayerNorm(config.d_model), FeedForward(config)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, cross_mask: torch.Tensor) -> torch.Tensor:
        B, G, S, D = x.shape
        x = x.reshape(B * G, S, D)  # [B * G, S, D]
        h = self.ln_1(x)
        x = x + self.self_attn(h, h, None, causal=True)  # [B * G, S, D]
        x = x.view(B, G * S, D)  # [B, G * S, D]
        x = x + self.cross_attn(self.ln_2(x), memory, cross_mask)  # [B, G * S, D]
        x = x + self.mlp(self.ln_3(x))  # [B, G * S, D]
        return x.view(B, G, S, D)

    def step(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None,
             memory_kv: tuple[torch.Tensor, torch.Tensor], cross_mask: torch.Tensor,
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new token per group, ``x [B, G, D]``, given the keys and values of the groups'
        earlier tokens, ``cache [B * G, H, s, D/H]`` (None at the first step): what
        :meth:`forward` computes at the last position without recomputing the earlier ones.
        Returns (``[B, G, D]``, the cache with this token)."""
        B, G, D = x.shape
        h = self.ln_1(x).reshape(B * G, 1, D)  # [B * G, 1, D]
        k, v = self.self_attn.keys_values(h)  # [B * G, H, 1, D/H] x2
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # [B * G, H, s + 1, D/H]
        x = x + self.self_attn.attend(h, k, v, None).view(B, G, D)  # earlier tokens only: causal
        x = x + self.cross_attn.attend(self.ln_2(x), *memory_kv, cross_mask)  # [B, G, D]
        return x + self.mlp(self.ln_3(x)), (k, v)


class TIGER(nn.Module):
    objective = "generative"  # the decoder is trained to emit the next item's code tuple

    def __init__(self, config: TIGERConfig):
        super().__init__()
        self.config = config
        sizes = config.code_sizes
        self.n_codes = len(sizes)  # P, code positions per item
        offsets = [1 + sum(sizes[:p]) for p in range(self.n_codes)]  # token id = offset + code, 0 = padding
        self.code_offsets = offsets
        self.bos = 1 + sum(sizes)  # the decoder's start token
        self.register_buffer("codes", torch.zeros(config.n_items + 1, self.n_codes, dtype=torch.long))
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        d = config.d_model
        self.tok_emb = nn.Embedding(self.bos + 1, d, padding_idx=0)  # shared: encoder, decoder, outputs
        self.level_emb = nn.Embedding(self.n_codes, d)  # which code of an item a token is
        self.pos_emb = nn.Embedding(config.max_items, d)  # item position, 0 = most recent
        self.dec_pos_emb = nn.Embedding(self.n_codes, d)  # decoder step (0 = start token)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layers))
        self.ln_enc = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_decoder_layers))
        self.ln_dec = nn.LayerNorm(d)
        init_transformer_weights(self, config.n_layers + config.n_decoder_layers)
        self._trie: tuple[Any, CodeTrie] | None = None

    @classmethod
    def from_split(cls, config: TIGERConfig, split: Any) -> "TIGER":
        """A fresh model whose code table is computed from ``split``'s training sequences and
        item attributes (:func:`training.semantic_ids.semantic_ids`)."""
        if config.n_items != split.vocab.n_items:
            raise ValueError(f"config has {config.n_items} items, the split {split.vocab.n_items}")
        ids = semantic_ids(split.train_sequences, config.n_items, getattr(split, "item_attributes", None),
                           config.semantic_id_config())
        if ids.max_group > config.collision_codes:
            raise ValueError(f"{ids.max_group} items share their first {config.levels} codes, more than "
                             f"collision_codes={config.collision_codes}: raise it or codebook_size")
        log.info("tiger semantic ids: %d levels x %d codes, %.1f%% of items collide, largest group %d",
                 config.levels, config.codebook_size, 100 * ids.collision_share, ids.max_group)
        model = cls(config)
        model.codes.copy_(ids.codes)
        return model

    def trie(self) -> CodeTrie:
        """The valid code tuples, rebuilt whenever the code table changed (loaded, moved)."""
        stamp = (self.codes.device, self.codes.data_ptr(), self.codes._version)
        if self._trie is None or self._trie[0] != stamp:
            self._trie = (stamp, CodeTrie.build(self.codes, self.config.code_sizes))
        return self._trie[1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded, L <= max_items) -> encoder memory ``[B, L * P, D]``,
        the P code tokens of each item in a row (item-causal, see the module docstring)."""
        B, L = input_ids.shape
        if L > self.config.max_items:
            raise ValueError(f"sequence length {L} > max_items {self.config.max_items}")
        P, D, dev = self.n_codes, self.config.d_model, input_ids.device
        is_item = input_ids != 0  # [B, L]
        tokens = (self.codes[input_ids] + self.offsets) * is_item.unsqueeze(-1)  # [B, L, P]
        positions = torch.arange(L - 1, -1, -1, device=dev)  # [L], 0 = most recent
        x = self.tok_emb(tokens) * math.sqrt(D)  # [B, L, P, D]
        x = x + self.pos_emb(positions)[:, None, :] + self.level_emb.weight  # [B, L, P, D]
        x = self.emb_dropout(x) * is_item[..., None, None].to(x.dtype)  # [B, L, P, D]
        x = x.reshape(B, L * P, D)  # [B, L * P, D]
        causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()  # [L, L]
        diagonal = torch.eye(L, dtype=torch.bool, device=dev)  # [L, L]
        # As in SASRec: a padding item sees itself, so no softmax row is empty (and none is scored).
        items = causal & (is_item[:, None, :] | diagonal)  # [B, L, L]
        mask = items.repeat_interleave(P, dim=1).repeat_interleave(P, dim=2).unsqueeze(1)  # [B, 1, LP, LP]
        for block in self.encoder:
            x = block(x, mask)  # [B, L * P, D]
        return self.ln_enc(x)

    def decode(self, memory: torch.Tensor, visible: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``memory [B, L * P, D]``, ``visible [B, G, L]`` (the items each group may attend to),
        decoder input ``tokens [B, G, S]`` -> hidden states ``[B, G, S, D]``."""
        B, G, S = tokens.shape
        L = visible.shape[2]
        x = self.tok_emb(tokens) * math.sqrt(self.config.d_model) + self.dec_pos_emb.weight[:S]  # [B, G, S, D]
        x = self.emb_dropout(x)
        cross = visible[:, :, None, :, None].expand(B, G, S, L, self.n_codes)  # [B, G, S, L, P]
        cross = cross.reshape(B, 1, G * S, L * self.n_codes)  # [B, 1, G * S, L * P]
        for block in self.decoder:
            x = block(x, memory, cross)  # [B, G, S, D]
        return self.ln_dec(x)

    def code_logits(self, hidden: torch.Tensor, position: int) -> torch.Tensor:
        """``hidden [..., D]`` -> logits ``[..., V_p]`` of code position ``position`` (tied to the
        token embeddings of that position's codes)."""
        start = self.code_offsets[position]
        return hidden @ self.tok_emb.weight[start:start + self.config.code_sizes[position]].T

    def generative_loss(self, memory: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of every step's next item code tuple, summed over its P
        codes (the item's negative log-likelihood), averaged over the target steps.

        ``memory [B, L * P, D]`` is :meth:`forward` of the window's inputs; ``targets [B, L]`` the
        next items (0 = padding). The training windows' inputs and targets are padded alike, so
        the targets also tell which input steps are items.
        """
        B, L = targets.shape
        dev = targets.device
        is_item = targets != 0  # [B, L]
        causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()  # [L, L]
        visible = causal & (is_item[:, None, :] | torch.eye(L, dtype=torch.bool, device=dev))  # [B, L, L]
        codes = self.codes[targets]  # [B, L, P]
        start = torch.full((B, L, 1), self.bos, dtype=torch.long, device=dev)  # [B, L, 1]
        tokens = torch.cat([start, (codes + self.offsets)[..., :-1]], dim=-1)  # [B, L, P]
        hidden = self.decode(memory, visible, tokens)[is_item]  # [M, P, D]
        wanted = codes[is_item]  # [M, P]
        loss = hidden.new_zeros(())
        for p in range(self.n_codes):
            loss = loss + F.cross_entropy(self.code_logits(hidden[:, p], p).float(), wanted[:, p])
        return loss

    def decode_step(self, tokens: torch.Tensor, position: int, caches: list, memory_kv: list,
                    cross_mask: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Incremental :meth:`decode` (eval mode): the new token ``tokens [B, G]`` at decoder
        ``position`` -> its hidden state ``[B, G, D]`` and every block's updated self-attention
        cache; ``memory_kv`` holds each block's cross-attention keys and values of the memory."""
        x = self.tok_emb(tokens) * math.sqrt(self.config.d_model) + self.dec_pos_emb.weight[position]  # [B, G, D]
        out = []
        for block, cache, kv in zip(self.decoder, caches, memory_kv):
            x, cache = block.step(x, cache, kv, cross_mask)  # [B, G, D]
            out.append(cache)
        return self.ln_dec(x), out

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, N + 1]``: the items the constrained beam search ends on get their sequence
        log-probabilities, every other item (and column 0, padding) -inf."""
        items, beam_scores = beam_search(self, input_ids)  # [B, W] x2
        out = torch.full((input_ids.shape[0], self.config.n_items + 1), float("-inf"), device=input_ids.device)
        out.scatter_reduce_(1, items, beam_scores, reduce="amax")  # [B, N + 1]; a dead beam never wins
        out[:, 0] = float("-inf")
        return out
