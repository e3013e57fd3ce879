"""The one training loop every architecture shares.

``train_model`` trains any registered model on a split (:class:`training.data.Split`: the
warehouse's :class:`~training.data.TemporalSplit` or the benchmarks'
:class:`~training.loo.LeaveOneOutSplit`) with the hyperparameters of a
:class:`~training.config.TrainConfig`: AdamW, early stopping on the validation metric only,
the best validated epoch's weights kept, the test metrics of that checkpoint computed once, and
a resumable checkpoint file written (:mod:`training.checkpoints`).

What is optimised comes from the model's objective (:mod:`training.objectives`): next-item
(SASRec, GRU4Rec, HSTU), masked (BERT4Rec), or nothing for the non-neural models, which are
built from the training data and validated once. Loss: full softmax over the catalog, or
sampled softmax with ``loss="sampled"``. On CUDA the forward/backward runs under bf16 autocast
and the step loop never waits for the device (the loss is summed on the device, read once per
epoch); evaluation is always fp32. Deterministic for a seed on CPU. Data parallel under
``torchrun`` (see :mod:`training.distributed`).

Run from the command line as ``python -m training.train`` (:mod:`training.cli`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from core.settings import Settings
from training import distributed
from training.checkpoints import build_checkpoint, cpu_state, load_resumable, save_checkpoint
from training.config import TrainConfig
from training.data import Split
from training.devices import prepare_device
from training.evaluate import metrics_on_test, metrics_on_validation
from training.models import make_config, model_classes, split_shape
from training.objectives import Objective, batches, objective_for
from training.progress import EpochReport

__all__ = ["TrainConfig", "TrainResult", "train_model"]

# Per-epoch lines (epoch, loss, validation metric, seconds, sequences/s) land in the task log.
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_name: str
    config: dict[str, Any]
    checkpoint_path: Path | None  # None on a DDP rank other than 0 (only rank 0 writes)
    best_epoch: int  # 0 for a model without trainable parameters
    epochs_run: int
    history: list[dict[str, float]]  # per validated epoch: epoch, train_loss, val metrics
    val_metrics: dict[str, float]  # of the best checkpoint
    test_metrics: dict[str, float]  # of the best checkpoint, computed once after selection
    device: str
    train_seconds: float
    model: nn.Module = field(repr=False)  # best weights, eval mode
    train_config: TrainConfig = field(default_factory=TrainConfig)
    # Diagnostics of the same single test pass that are not ranking metrics (popularity bias):
    # kept apart so ``test_metrics`` equals what any Recommender computes on the same examples.
    test_extra: dict[str, float] = field(default_factory=dict)
    train_windows: int = 0  # training windows (sequences) per epoch, all ranks together
    sequences_per_second: float = 0.0  # training windows processed per second of optimisation
    stopped_by: str = ""  # "epochs", "patience", "time", "diverged" or "" (nothing to train)
    world_size: int = 1


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # nanoGPT's split: matrices (incl. embeddings) decay; biases and LayerNorm gains do not.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def _out_of_time(deadline: float | None, ctx: distributed.DistContext, device: torch.device) -> bool:
    """Whether the time budget is spent, checked after every optimisation step.

    One ``time.monotonic()`` per step; under DDP rank 0's clock decides for every rank (one small
    broadcast per step, only when a budget is set), so all ranks leave the epoch at the same step.
    """
    if deadline is None:
        return False
    spent = time.monotonic() >= deadline
    if ctx.enabled:
        (spent,) = distributed.broadcast_flags([int(spent)], ctx, device)
    return bool(spent)


def train_model(
    settings: Settings,
    split: Split,
    model_name: str = "sasrec",
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    checkpoint_path: Path | None = None,
    resume_from: Path | str | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``model_name`` on ``split``; keep the epoch with the best validation metric.

    ``train_config`` (default ``TrainConfig()``) holds the hyperparameters; keyword
    ``overrides`` (``epochs=6, lr=3e-3``, ...) replace its fields. ``model_config``: overrides
    of the model's config dataclass. ``resume_from``: a checkpoint this function wrote; the model,
    optimizer, epoch, best state, early-stopping counter and RNG states are restored and training
    continues up to ``epochs`` (the same run as an uninterrupted one, on CPU).

    Deterministic for a given seed on CPU (seeded init, dropout, shuffling, masking, sampling).
    """
    tc = (train_config or TrainConfig()).with_overrides(**overrides)
    seed = settings.seed if tc.seed is None else tc.seed
    ctx = distributed.setup("cuda" if str(tc.device or settings.device).startswith("cuda") else "cpu")
    try:
        run = _Run(settings, split, model_name, objective_for(model_name), tc, seed, ctx, model_config,
                   checkpoint_path)
        if run.trainable:
            run.optimise(resume_from)
        else:
            run.fit()
        return run.finish()
    finally:
        distributed.teardown(ctx)


class _Epoch(NamedTuple):
    train_loss: float  # mean loss per target position
    seconds: float  # of the optimisation steps
    steps: int
    n_batches: int  # steps of a whole epoch
    windows: int  # processed by this rank
    cut: bool  # ended early by the time budget


class _Run:
    """One ``train_model`` call: the model, its injected objective, and what the epochs decided."""

    def __init__(
        self, settings: Settings, split: Split, model_name: str, objective: Objective, tc: TrainConfig,
        seed: int, ctx: distributed.DistContext, model_overrides: dict[str, Any] | None,
        checkpoint_path: Path | None,
    ) -> None:
        self.split, self.model_name, self.objective, self.tc, self.seed, self.ctx = (
            split, model_name, objective, tc, seed, ctx)
        self.device = prepare_device(tc.device or settings.device, ctx.local_rank)
        torch.manual_seed(seed)  # parameter init (identical on every rank)
        # The model's overrides win over the split's shape (``n_attributes=0``: ID embeddings only).
        self.config = make_config(model_name, **(split_shape(split) | (model_overrides or {})))
        self.model = objective.build(model_classes(model_name)[1], self.config, split)
        self.model.to(self.device)
        if ctx.enabled:
            torch.manual_seed(seed + ctx.rank)  # dropout masks differ per rank, like their data
        self.shuffle_rng = torch.Generator().manual_seed(seed)  # the same permutation on every rank
        self.trainable = objective.trainable(self.model)
        self.started = time.monotonic()  # moved back by a resumed run's earlier seconds
        if checkpoint_path is None:
            checkpoint_path = settings.models_dir / (getattr(split, "as_of", None) or "latest") / f"{model_name}.pt"
        self.checkpoint_path = Path(checkpoint_path)
        self.history: list[dict[str, float]] = []
        self.best_val: dict[str, float] | None = None
        self.best_epoch, self.best_state, self.epochs_run, self.stale = 0, None, 0, 0
        self.stopped_by, self.resume_state = "", None
        self.n_windows, self.seqs_per_s = 0, 0.0

    def validate(self) -> dict[str, float]:
        return metrics_on_validation(self.model, self.split, self.device, self.tc.eval_batch_size)

    def fit(self) -> None:
        """Nothing to optimise: the "best checkpoint" is the model as built from training data."""
        self.best_val = self.validate() if self.ctx.is_main else {}
        self.best_state = cpu_state(self.model)

    def optimise(self, resume_from: Path | str | None) -> None:
        tc, ctx, device, model = self.tc, self.ctx, self.device, self.model
        if not self.split.val_examples:
            raise ValueError("no validation examples: cannot select a checkpoint")
        self.objective.start(model, self.config, tc, self.seed, ctx.rank, device)
        inputs = self.objective.windows(self.split.train_sequences, self.split.max_len)  # [W, L]
        self.n_windows = int(inputs.shape[0])
        lengths = (inputs != 0).sum(dim=1)  # [W]
        optimizer = _optimizer(model, tc.lr, tc.weight_decay)
        net = distributed.wrap(model, ctx, device)
        first_epoch = 1 if resume_from is None else self._restore(resume_from, optimizer)
        # Selecting an epoch on a handful of validation examples picks noise: below the floor
        # every epoch counts as an improvement, so the last one is kept and none is skipped.
        selecting = len(self.split.val_examples) >= tc.min_val_examples
        steps_seconds, steps_windows = 0.0, 0
        # The budget is checked after every step (see TrainConfig.max_train_seconds); ``started``
        # already counts a resumed run's earlier seconds.
        deadline = None if tc.max_train_seconds is None else self.started + tc.max_train_seconds
        report = EpochReport(log, self.model_name, tc, ctx.is_main, first_epoch)
        for epoch in range(first_epoch, tc.epochs + 1):
            ep = self._steps(net, optimizer, lengths, deadline)
            steps_seconds += ep.seconds
            steps_windows += ep.windows * ctx.world_size
            self.epochs_run = epoch
            elapsed = time.monotonic() - self.started
            out_of_time = deadline is not None and time.monotonic() >= deadline
            # Rank 0's clock and loss decide for every rank, so all of them validate (and stop)
            # at the same epoch.
            out_of_time, diverged = (bool(v) for v in distributed.broadcast_flags(
                [int(out_of_time), int(not math.isfinite(ep.train_loss))], ctx, device))
            val, val_started = None, time.monotonic()
            stop = 0
            if epoch % tc.eval_every == 0 or epoch == tc.epochs or out_of_time or diverged:
                val, stop = self._select(epoch, ep, elapsed, diverged, selecting)
            if out_of_time and not stop:
                stop, self.stopped_by = 1, "time"
            report.epoch(epoch, ep.train_loss, val, self.best_val, self.best_epoch, ep.seconds,
                         time.monotonic() - val_started, ep.windows * ctx.world_size, ep.steps, ep.n_batches,
                         ep.cut, steps_windows / max(steps_seconds, 1e-9))
            self.resume_state = {
                "model": cpu_state(model), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "stale": self.stale, "torch_rng": torch.get_rng_state(), "shuffle_rng": self.shuffle_rng.get_state(),
                **self.objective.rng_states(device),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "train_seconds": time.monotonic() - self.started,
            }
            if stop:
                break
            if tc.checkpoint_every and epoch % tc.checkpoint_every == 0 and ctx.is_main and self.best_state is not None:
                save_checkpoint(self.checkpoint_path, self._checkpoint({}, {}, resume=self.resume_state))
        else:
            self.stopped_by = "epochs"
        report.close()
        if self.best_state is None or (ctx.is_main and self.best_val is None):
            raise RuntimeError("training diverged in its first epoch; no checkpoint to keep")
        self.seqs_per_s = steps_windows / max(steps_seconds, 1e-9)
        model.load_state_dict(self.best_state)
        if hasattr(model, "calibrate") and ctx.is_main:
            self._calibrate()

    def _calibrate(self) -> None:
        """Post-training choices of the selected checkpoint (the hybrid's blend weight), made on
        the validation examples like the epoch; the checkpoint's config records them."""
        started = time.monotonic()
        calibrated = self.model.calibrate(self.validate, self.tc.selection_metric, known=self.best_val)
        if calibrated is not None:
            self.best_val = calibrated
            log.info("%s: calibrated on validation in %.1f s: %s", self.model_name, time.monotonic() - started,
                     {k: v for k, v in asdict(self.config).items() if k == "blend"})

    def _restore(self, resume_from: Path | str, optimizer: torch.optim.Optimizer) -> int:
        """Continue the run of a resumable checkpoint; the first epoch still to run."""
        state = load_resumable(resume_from, self.model_name)
        r = state["resume"]
        self.model.load_state_dict(r["model"])
        optimizer.load_state_dict(r["optimizer"])
        self.epochs_run = int(r["epoch"])
        self.best_epoch, self.stale = int(state["best_epoch"]), int(r["stale"])
        self.best_val = state["metrics"]["val"] or None
        self.best_state = state["state_dict"]
        self.history = list(state["history"])
        torch.set_rng_state(r["torch_rng"])
        self.shuffle_rng.set_state(r["shuffle_rng"])
        self.objective.load_rng_states(r, self.device)
        if self.device.type == "cuda" and r.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(r["cuda_rng"], self.device)
        self.started -= float(r.get("train_seconds", 0.0))
        return int(r["epoch"]) + 1

    def _steps(self, net: nn.Module, optimizer: torch.optim.Optimizer, lengths: torch.Tensor,
               deadline: float | None) -> _Epoch:
        """One epoch of optimisation steps over this rank's shard of the windows."""
        tc, ctx, device = self.tc, self.ctx, self.device
        use_bf16 = device.type == "cuda" and tc.bf16
        net.train()
        order = distributed.shard(torch.randperm(self.n_windows, generator=self.shuffle_rng), ctx)  # [W / world]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_targets = 0
        epoch_started = time.monotonic()
        epoch_batches = batches(order, lengths, tc.batch_size, tc.length_buckets, self.shuffle_rng)
        steps, windows, cut = 0, 0, False
        for idx in epoch_batches:  # [B]
            x, y = self.objective.batch(idx)  # [B, L] x2, CPU
            n = int((y != 0).sum())
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                hidden = net(x)  # [B, L, D]
                loss = self.objective.loss(hidden, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            optimizer.step()
            loss_sum += loss.detach().to(torch.float64) * n
            n_targets += n
            steps += 1
            windows += len(idx)
            # Out of time: the epoch ends here and its model is validated, so the steps already
            # taken are not lost.
            if _out_of_time(deadline, ctx, device):
                cut = steps < len(epoch_batches)
                break
        train_loss = loss_sum.item() / max(n_targets, 1)  # the epoch's one host sync
        return _Epoch(train_loss, time.monotonic() - epoch_started, steps, len(epoch_batches), windows, cut)

    def _select(self, epoch: int, ep: _Epoch, elapsed: float, diverged: bool,
                selecting: bool) -> tuple[dict[str, float] | None, int]:
        """Validate the epoch (rank 0) and keep it if it is the best; (its metrics, stop)."""
        tc, metric = self.tc, self.tc.selection_metric
        stop = improved = 0
        val = None
        if self.ctx.is_main:
            val = self.validate()
            row = {"epoch": epoch, "train_loss": ep.train_loss, "seconds": elapsed, "epoch_seconds": ep.seconds,
                   "steps": ep.steps, "steps_per_epoch": ep.n_batches}
            self.history.append(row | {f"val_{k}": v for k, v in val.items()})
            if diverged:
                stop, self.stopped_by = 1, "diverged"  # keep whatever was best before
            elif self.best_val is None or not selecting or val[metric] > self.best_val[metric]:
                self.best_val, self.best_epoch, self.stale, improved = val, epoch, 0, 1
            else:
                self.stale += 1
                if self.stale >= tc.patience:
                    stop, self.stopped_by = 1, "patience"
        stop, improved, self.best_epoch = distributed.broadcast_flags(
            [stop, improved, self.best_epoch], self.ctx, self.device)
        if improved:
            self.best_state = cpu_state(self.model)
        return val, stop

    def _checkpoint(self, test: dict, extra: dict, resume: dict | None = None, ddp: dict | None = None,
                    summary: dict | None = None) -> dict[str, Any]:
        # The TrainConfig as run (seed and device resolved), then what the run did.
        train = self.tc.to_dict() | {"seed": self.seed, "device": str(self.device)} | {
            "epochs_run": self.epochs_run, "world_size": self.ctx.world_size,
        } | (summary or {})
        return build_checkpoint(self.model_name, self.config, self.split, self.best_state, self.best_val, test,
                                extra, self.best_epoch, self.history, train, resume, ddp)

    def finish(self) -> TrainResult:
        """Score the selected checkpoint on the test examples once; write the checkpoint file."""
        ctx, model = self.ctx, self.model
        model.eval()
        test: dict[str, float] = {}
        extra: dict[str, float] = {}
        fingerprints = distributed.all_fingerprints(self.best_state, ctx)
        if ctx.is_main:
            # The test examples are scored once, by the checkpoint chosen on validation only.
            test, extra = metrics_on_test(model, self.split, self.device, self.tc.eval_batch_size)
        seconds = time.monotonic() - self.started
        written: Path | None = None
        if ctx.is_main:
            ddp = {"world_size": ctx.world_size, "rank_fingerprints": fingerprints,
                   "ranks_identical": len(set(fingerprints)) == 1} if ctx.enabled else None
            summary = {"train_seconds": seconds, "sequences_per_second": self.seqs_per_s,
                       "train_windows": self.n_windows, "stopped_by": self.stopped_by,
                       "loss_used": self.objective.loss_kind if self.trainable else None,
                       "objective": self.objective.name}
            save_checkpoint(self.checkpoint_path, self._checkpoint(test, extra, self.resume_state, ddp, summary))
            written = self.checkpoint_path
        return TrainResult(
            model_name=self.model_name, config=asdict(self.config), checkpoint_path=written,
            best_epoch=self.best_epoch, epochs_run=self.epochs_run, history=self.history,
            val_metrics=self.best_val or {}, test_metrics=test, device=str(self.device), train_seconds=seconds,
            model=model, train_config=self.tc, test_extra=extra, train_windows=self.n_windows,
            sequences_per_second=self.seqs_per_s, stopped_by=self.stopped_by, world_size=ctx.world_size,
        )


if __name__ == "__main__":  # ``python -m training.train`` / ``torchrun -m training.train``: the CLI
    from training.cli import main

    main()
