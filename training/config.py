"""``TrainConfig``: the loop's hyperparameters, one typed object instead of repeated kwargs.

It is saved in every checkpoint (``checkpoint["train"]``, resolved: seed and device filled in)
next to the model's own config (``checkpoint["config"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # training windows per step (per process under DDP)
    lr: float = 1e-3  # AdamW, betas (0.9, 0.98)
    weight_decay: float = 0.01  # on matrices and embeddings only
    patience: int = 3  # validations without improvement before stopping
    seed: int | None = None  # None: ``settings.seed``
    device: str | None = None  # "auto" / "cpu" / "cuda" / "cuda:1"; None: ``settings.device``
    eval_every: int = 1  # validate every N epochs (and after the last one)
    # Wall-time budget of the optimisation, in seconds since training started (a resumed run's
    # earlier seconds included). The clock is read after every step: once the budget is spent
    # the epoch ends early (a partial epoch), its model is validated like any epoch's, and
    # training stops with ``stopped_by="time"``; so it overshoots by about one step plus one
    # validation and the test pass. A resumed time-stopped run continues at the next epoch (the
    # rest of the cut epoch is not replayed). None: no budget.
    max_train_seconds: float | None = None
    selection_metric: str = "ndcg_at_10"  # validation metric that picks the checkpoint
    # Fewer validation examples than this: no selection (the last epoch is kept) and no early stop.
    min_val_examples: int = 0
    loss: str | None = None  # "full" / "sampled"; None: the model config's ``loss`` or "full"
    n_negatives: int | None = None  # sampled softmax; None: the model config's or 256
    mask_prob: float | None = None  # masked objective: share of items masked; None: model config's or 0.2
    mask_last_prob: float = 0.0  # masked objective: share of rows with only their last item masked
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    bf16: bool = True  # bf16 autocast for the forward/backward on CUDA (never on CPU)
    eval_batch_size: int = 256
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    checkpoint_every: int = 0  # also write the (resumable) checkpoint every N epochs; 0: at the end
    # Length bucketing: within each run of ``length_buckets`` shuffled batches, windows are
    # sorted by length before batching (batch order then shuffled), so a batch is padded to
    # about its own rows' length instead of the longest user's. 0: plain random batches.
    length_buckets: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1 or self.eval_every < 1 or self.patience < 1:
            raise ValueError("batch_size, eval_every and patience must be >= 1")
        if self.max_train_seconds is not None and not self.max_train_seconds >= 0:
            raise ValueError("max_train_seconds must be >= 0 (or None for no budget)")
        if self.loss not in (None, "full", "sampled"):
            raise ValueError(f"loss must be 'full' or 'sampled', not {self.loss!r}")
        if not 0.0 <= (self.mask_prob or 0.0) <= 1.0 or not 0.0 <= self.mask_last_prob <= 1.0:
            raise ValueError("mask_prob and mask_last_prob are probabilities")

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with ``overrides`` applied; None values are ignored, unknown keys rejected."""
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"TrainConfig has no fields {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
