"""The one training loop every architecture shares, and its MLflow run + registry version.

``train_model`` trains any registered model on a split (:class:`training.data.Split`: the
warehouse's :class:`~training.data.TemporalSplit` or the benchmarks'
:class:`~training.loo.LeaveOneOutSplit`) with the hyperparameters of a
:class:`~training.config.TrainConfig`: AdamW, early stopping on the validation metric only,
the best validated epoch's weights kept, the test metrics of that checkpoint computed once, and
a resumable checkpoint file written.

What the loop does per model, from the module class's ``objective``:

* ``"next_item"`` (SASRec, GRU4Rec, HSTU; the default): causal, the hidden state at step t is
  trained to predict item t + 1 on every window of every training sequence;
* ``"masked"`` (BERT4Rec): a random ``mask_prob`` share of each window's items (at least one
  per row) is replaced by ``model.mask_token`` and predicted at those positions only; a
  ``mask_last_prob`` share of rows gets only its last item masked (the next-item case);
* ``"none"`` (non-neural): built from the training sequences (``fit(config, sequences)``;
  popularity from the training counts), nothing to optimise, validated once.

Loss: sampled softmax (``training.losses.sampled_softmax_loss``) when the train config (or the
model config) says ``loss="sampled"``, otherwise full softmax over the catalog. On CUDA the
forward/backward runs under bf16 autocast and the step loop never waits for the device (the
loss is summed on the device, read once per epoch); evaluation is always fp32. Deterministic for
a seed on CPU. Data parallel under ``torchrun`` (see :mod:`training.distributed`).

``train_and_log`` is the nightly stage: split the warehouse, train the popularity baseline and the
candidate, log both to one MLflow run and register the candidate's checkpoint as a new version.

    python -m training.train --date 2026-11-20 --model sasrec --epochs 20
    python -m training.train --loo ../shared/data/amazon/Beauty.txt --model sasrec --out /tmp/run
    torchrun --nproc_per_node=2 -m training.train --loo FILE --model sasrec --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.cli_errors import add_debug_flag, user_errors
from core.settings import Settings
from training import distributed
from training.config import TrainConfig
from training.data import Split, TemporalSplit
from training.evaluate import evaluate_examples
from training.losses import full_softmax_loss
from training.models import MODELS, make_config, model_classes
from training.models.baselines import PopularityModel, top_items
from training.tracking import (
    CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE, EXPERIMENT_NAME, ensure_registered_model,
    get_or_create_experiment, mlflow_client,
)

SELECTION_METRIC = "ndcg_at_10"
N_POPULAR = 100

__all__ = ["TrainConfig", "TrainResult", "train_model", "train_and_log", "training_windows", "item_windows"]

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


def resolve_device(setting: str = "auto", local_rank: int = 0) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} requested but CUDA is not available")
    if setting == "cuda":
        # Always with an index: torch.cuda.set_device refuses a bare "cuda", and each DDP process
        # takes the GPU of its local rank (0 in a single process).
        return torch.device("cuda", local_rank)
    return torch.device(setting)


def training_windows(sequences: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every next-item transition of every training sequence, exactly once.

    A sequence longer than ``max_len + 1`` is cut from its end into windows of ``max_len + 1``
    items overlapping by one item, so heavy users' early history is still trained on instead of
    being truncated away. Returns left-padded ``inputs, targets`` of shape ``[W, max_len]``.
    """
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            window = seq[start:end]
            inputs.append(window[:-1])
            targets.append(window[1:])
            end = start + 1 if start > 0 else 0
    if not inputs:
        raise ValueError("no training sequence has two items: nothing to learn from")
    x = torch.zeros(len(inputs), max_len, dtype=torch.long)  # [W, max_len]
    y = torch.zeros(len(inputs), max_len, dtype=torch.long)  # [W, max_len]
    for row, (inp, tgt) in enumerate(zip(inputs, targets)):
        x[row, max_len - len(inp):] = torch.tensor(inp, dtype=torch.long)
        y[row, max_len - len(tgt):] = torch.tensor(tgt, dtype=torch.long)
    return x, y


def item_windows(sequences: list[list[int]], max_len: int) -> torch.Tensor:
    """The masked objective's windows: each sequence cut from its end into non-overlapping
    windows of at most ``max_len`` items (windows of one item dropped), left-padded ``[W, max_len]``."""
    rows: list[list[int]] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len)
            rows.append(seq[start:end])
            end = start
    if not rows:
        raise ValueError("no training sequence has two items: nothing to learn from")
    x = torch.zeros(len(rows), max_len, dtype=torch.long)  # [W, max_len]
    for row, items in enumerate(rows):
        x[row, max_len - len(items):] = torch.tensor(items, dtype=torch.long)
    return x


def mask_batch(
    x: torch.Tensor, mask_token: int, mask_prob: float, mask_last_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, L]`` (CPU, left-padded) -> (masked inputs, targets) for the masked objective.

    A ``mask_prob`` share of each row's items is masked, at least one per row (the last item
    when the draw picked none); a ``mask_last_prob`` share of rows has only its last item masked.
    Targets hold the original item at masked positions and 0 elsewhere.
    """
    is_item = x != 0  # [B, L]
    masked = (torch.rand(x.shape, generator=generator) < mask_prob) & is_item  # [B, L]
    if mask_last_prob > 0:
        last_only = torch.rand(x.shape[0], generator=generator) < mask_last_prob  # [B]
        masked[last_only] = False
        masked[last_only, -1] = True
    none = ~masked.any(dim=1)  # [B]
    masked[none, -1] = True  # left padding: the last column is always an item
    inputs = torch.where(masked, torch.full_like(x, mask_token), x)  # [B, L]
    targets = torch.where(masked, x, torch.zeros_like(x))  # [B, L]
    return inputs, targets


def batches(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, buckets: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Index batches of an epoch from the (shuffled, sharded) ``order``.

    ``buckets == 0``: consecutive slices of ``order``. Otherwise every run of ``buckets *
    batch_size`` windows is sorted by length (stable) and sliced, and the batches' order is
    shuffled with ``generator``: each batch is padded to about its own length, and the epoch
    still visits every window exactly once, deterministically for a seed.
    """
    if buckets <= 0:
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    out: list[torch.Tensor] = []
    chunk = buckets * batch_size
    for s in range(0, len(order), chunk):
        part = order[s:s + chunk]  # [<= chunk]
        part = part[torch.sort(lengths[part], stable=True).indices]
        out += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    perm = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in perm]


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # nanoGPT's split: matrices (incl. embeddings) decay; biases and LayerNorm gains do not.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def _scorer(model: nn.Module):
    def score(input_ids: torch.Tensor) -> torch.Tensor:
        return model.score_last(input_ids)  # [B, N + 1], evaluated in full precision

    return score


def objective_of(model_name: str) -> str:
    """The module class's ``objective``; popularity (and any class without one and without
    trainable parameters) is ``"none"``, anything else defaults to ``"next_item"``."""
    _, model_cls = model_classes(model_name)
    objective = getattr(model_cls, "objective", None)
    if objective is None:
        objective = "none" if model_cls is PopularityModel else "next_item"
    if objective not in ("next_item", "masked", "none"):
        raise ValueError(f"{model_name}: unknown objective {objective!r}")
    return objective


def _build(model_name: str, split: Split, overrides: dict[str, Any] | None) -> tuple[Any, nn.Module]:
    config = make_config(
        model_name, n_items=split.vocab.n_items, max_len=split.max_len, **(overrides or {})
    )
    _, model_cls = model_classes(model_name)
    if objective_of(model_name) == "none":
        if hasattr(model_cls, "fit"):
            return config, model_cls.fit(config, split.train_sequences)
        if hasattr(model_cls, "from_counts"):
            return config, model_cls.from_counts(config, split.train_item_counts)
    return config, model_cls(config)


def _loss_kind(train_config: TrainConfig, model_config: Any) -> str:
    return train_config.loss or getattr(model_config, "loss", None) or "full"


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _progress_enabled(train_config: TrainConfig, ctx: distributed.DistContext) -> bool:
    if not ctx.is_main:
        return False
    if train_config.progress is not None:
        return train_config.progress
    return sys.stderr.isatty()


# torch's intra-op thread count when this module was imported, and the count training last set:
# any other count at the start of training was chosen by the caller (torch.set_num_threads).
_IMPORTED_TORCH_THREADS = torch.get_num_threads()
_threads_set_by_training: int | None = None


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cpusets, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def _use_usable_cores() -> int | None:
    """Set torch's intra-op threads to :func:`usable_cores` for CPU training; the count set, or None.

    torch sizes its pool from the machine's cores, which oversubscribes a process pinned to
    fewer (a container's cpuset, ``taskset``) and slows every step. The rule: training on CPU
    uses one intra-op thread per usable core (shared out among the ``LOCAL_WORLD_SIZE`` DDP
    processes of the machine), unless the caller chose a count itself, that is
    ``OMP_NUM_THREADS`` is set in the environment (``torchrun`` sets it to 1 per process), or
    ``torch.set_num_threads`` was called after this module was imported; those are left alone.
    """
    global _threads_set_by_training
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    current = torch.get_num_threads()
    if current not in (_IMPORTED_TORCH_THREADS, _threads_set_by_training):
        return None
    try:
        ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks_here = 1
    cores = max(1, usable_cores() // ranks_here)
    if cores != current:
        torch.set_num_threads(cores)
        log.info("torch intra-op threads: %d (usable cores; was %d)", cores, current)
    _threads_set_by_training = cores
    return cores


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


def _log_epoch(
    model_name: str, epoch: int, epochs: int, train_loss: float, val: dict[str, float] | None,
    best_val: dict[str, float] | None, best_epoch: int, metric: str, epoch_seconds: float,
    val_seconds: float, windows: int, steps: int, steps_per_epoch: int, cut: bool,
) -> None:
    """One INFO line per epoch (logger ``training.train``), whatever the progress bar does."""
    seqs_per_s = windows / max(epoch_seconds, 1e-9)
    shown = f"{val[metric]:.4f}" if val is not None else "-"
    best = f"{best_val[metric]:.4f}@{best_epoch}" if best_val else "-"
    cut_note = f" cut after {steps}/{steps_per_epoch} steps (max_train_seconds)" if cut else ""
    log.info(
        "%s epoch %d/%d: train_loss=%.4f val_%s=%s best=%s epoch_seconds=%.2f val_seconds=%.2f "
        "sequences_per_s=%.0f%s",
        model_name, epoch, epochs, train_loss, metric, shown, best, epoch_seconds, val_seconds,
        seqs_per_s, cut_note,
        extra={"model": model_name, "epoch": epoch, "train_loss": train_loss,
               f"val_{metric}": None if val is None else val[metric], "epoch_seconds": round(epoch_seconds, 3),
               "sequences_per_s": round(seqs_per_s, 1), "steps": steps, "steps_per_epoch": steps_per_epoch},
    )


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
        return _train(settings, split, model_name, tc, seed, ctx, model_config, checkpoint_path, resume_from)
    finally:
        distributed.teardown(ctx)


def _train(
    settings: Settings,
    split: Split,
    model_name: str,
    tc: TrainConfig,
    seed: int,
    ctx: distributed.DistContext,
    model_overrides: dict[str, Any] | None,
    checkpoint_path: Path | None,
    resume_from: Path | str | None,
) -> TrainResult:
    device = resolve_device(tc.device or settings.device, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        _use_usable_cores()  # one intra-op thread per usable core, unless the caller chose a count
    torch.manual_seed(seed)  # parameter init (identical on every rank)
    objective = objective_of(model_name)
    config, model = _build(model_name, split, model_overrides)
    model.to(device)
    if ctx.enabled:
        torch.manual_seed(seed + ctx.rank)  # dropout masks differ per rank, like their data
    shuffle_rng = torch.Generator().manual_seed(seed)  # the same permutation on every rank
    mask_rng = torch.Generator().manual_seed(seed + 1000 + ctx.rank)
    sample_rng = torch.Generator(device=device).manual_seed(seed + 2000 + ctx.rank)
    loss_kind = _loss_kind(tc, config)
    started = time.monotonic()
    if checkpoint_path is None:
        checkpoint_path = settings.models_dir / (getattr(split, "as_of", None) or "latest") / f"{model_name}.pt"
    checkpoint_path = Path(checkpoint_path)

    def validate() -> dict[str, float]:
        model.eval()
        return evaluate_examples(
            _scorer(model), split.val_examples, split.vocab, split.max_len, device=device,
            batch_size=tc.eval_batch_size, exclude_seen=split.exclude_seen,
        )

    history: list[dict[str, float]] = []
    trainable = objective != "none" and any(p.requires_grad for p in model.parameters())
    n_windows, seqs_per_s, stopped_by = 0, 0.0, ""
    optimizer = None
    resume_state: dict[str, Any] | None = None
    best_val: dict[str, float] | None
    if not trainable:
        # Nothing to optimise: the "best checkpoint" is the model as built from training data.
        best_val = validate() if ctx.is_main else {}
        best_epoch, epochs_run = 0, 0
        best_state = _cpu_state(model)
    else:
        if not split.val_examples:
            raise ValueError("no validation examples: cannot select a checkpoint")
        if objective == "masked":
            inputs = item_windows(split.train_sequences, split.max_len)  # [W, L]
            targets = None
            mask_token = int(model.mask_token)
        else:
            inputs, targets = training_windows(split.train_sequences, split.max_len)  # [W, L] x2
        n_windows = int(inputs.shape[0])
        lengths = (inputs != 0).sum(dim=1)  # [W]
        optimizer = _optimizer(model, tc.lr, tc.weight_decay)
        net = distributed.wrap(model, ctx, device)
        use_bf16 = device.type == "cuda" and tc.bf16
        if loss_kind == "sampled":
            from training.losses import sampled_softmax_loss
        n_negatives = tc.n_negatives or getattr(config, "n_negatives", None) or 256
        mask_prob = tc.mask_prob if tc.mask_prob is not None else getattr(config, "mask_prob", 0.2)
        best_val, best_epoch, best_state, epochs_run, stale = None, 0, None, 0, 0
        # Selecting an epoch on a handful of validation examples picks noise: below the floor
        # every epoch counts as an improvement, so the last one is kept and none is skipped.
        selecting = len(split.val_examples) >= tc.min_val_examples
        first_epoch = 1
        if resume_from is not None:
            state = torch.load(Path(resume_from), map_location="cpu", weights_only=True)
            if state.get("model_name") != model_name or "resume" not in state:
                raise ValueError(f"{resume_from} is not a resumable {model_name} checkpoint")
            r = state["resume"]
            model.load_state_dict(r["model"])
            optimizer.load_state_dict(r["optimizer"])
            first_epoch = int(r["epoch"]) + 1
            epochs_run = int(r["epoch"])
            best_epoch, stale = int(state["best_epoch"]), int(r["stale"])
            best_val = state["metrics"]["val"] or None
            best_state = state["state_dict"]
            history = list(state["history"])
            torch.set_rng_state(r["torch_rng"])
            shuffle_rng.set_state(r["shuffle_rng"])
            mask_rng.set_state(r["mask_rng"])
            if device.type == "cpu" and "sample_rng" in r:
                sample_rng.set_state(r["sample_rng"])
            if device.type == "cuda" and r.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(r["cuda_rng"], device)
            seconds_before = float(r.get("train_seconds", 0.0))
            started -= seconds_before
        steps_seconds, steps_windows = 0.0, 0
        # The budget is checked after every step (see TrainConfig.max_train_seconds); ``started``
        # already counts a resumed run's earlier seconds.
        deadline = None if tc.max_train_seconds is None else started + tc.max_train_seconds
        bar = None
        if _progress_enabled(tc, ctx):
            from tqdm import tqdm

            bar = tqdm(total=tc.epochs, initial=first_epoch - 1, unit="epoch", desc=model_name,
                       dynamic_ncols=True)
        for epoch in range(first_epoch, tc.epochs + 1):
            net.train()
            order = distributed.shard(torch.randperm(n_windows, generator=shuffle_rng), ctx)  # [W / world]
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            n_targets = 0
            epoch_started = time.monotonic()
            epoch_batches = batches(order, lengths, tc.batch_size, tc.length_buckets, shuffle_rng)
            steps, epoch_windows, cut = 0, 0, False
            for idx in epoch_batches:  # [B]
                x = inputs[idx]  # [B, max_len], CPU
                # Drop the columns that are padding in every row of this batch (a CPU reduction:
                # no device sync).
                width = int((x != 0).sum(dim=1).max())
                x = x[:, -width:]  # [B, L]
                if objective == "masked":
                    x, y = mask_batch(x, mask_token, mask_prob, tc.mask_last_prob, mask_rng)  # [B, L] x2
                else:
                    y = targets[idx][:, -width:]  # [B, L]
                n = int((y != 0).sum())
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    hidden = net(x)  # [B, L, D]
                    if loss_kind == "sampled":
                        loss = sampled_softmax_loss(hidden, y, model.output_embeddings,
                                                    n_negatives=n_negatives, generator=sample_rng)
                    else:
                        loss = full_softmax_loss(hidden, y, model.output_embeddings)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
                loss_sum += loss.detach().to(torch.float64) * n
                n_targets += n
                steps += 1
                epoch_windows += len(idx)
                # Out of time: the epoch ends here and its model is validated below, so the
                # steps already taken are not lost.
                if _out_of_time(deadline, ctx, device):
                    cut = steps < len(epoch_batches)
                    break
            train_loss = loss_sum.item() / max(n_targets, 1)  # the epoch's one host sync
            epoch_seconds = time.monotonic() - epoch_started
            steps_seconds += epoch_seconds
            steps_windows += epoch_windows * ctx.world_size
            epochs_run = epoch
            elapsed = time.monotonic() - started
            out_of_time = deadline is not None and time.monotonic() >= deadline
            # Rank 0's clock and loss decide for every rank, so all of them validate (and stop)
            # at the same epoch.
            out_of_time, diverged = (bool(v) for v in distributed.broadcast_flags(
                [int(out_of_time), int(not math.isfinite(train_loss))], ctx, device))
            last = epoch == tc.epochs or out_of_time or diverged
            stop = improved = 0
            val, val_started = None, time.monotonic()
            if epoch % tc.eval_every == 0 or last:
                if ctx.is_main:
                    val = validate()
                    row = {"epoch": epoch, "train_loss": train_loss, "seconds": elapsed,
                           "epoch_seconds": epoch_seconds, "steps": steps, "steps_per_epoch": len(epoch_batches)}
                    history.append(row | {f"val_{k}": v for k, v in val.items()})
                    if diverged:
                        stop, stopped_by = 1, "diverged"  # keep whatever was best before
                    elif (best_val is None or not selecting
                          or val[tc.selection_metric] > best_val[tc.selection_metric]):
                        best_val, best_epoch, stale, improved = val, epoch, 0, 1
                    else:
                        stale += 1
                        if stale >= tc.patience:
                            stop, stopped_by = 1, "patience"
                stop, improved, best_epoch = distributed.broadcast_flags([stop, improved, best_epoch], ctx, device)
                if improved:
                    best_state = _cpu_state(model)
            if out_of_time and not stop:
                stop, stopped_by = 1, "time"
            if ctx.is_main:
                _log_epoch(model_name, epoch, tc.epochs, train_loss, val, best_val, best_epoch,
                           tc.selection_metric, epoch_seconds, time.monotonic() - val_started,
                           epoch_windows * ctx.world_size, steps, len(epoch_batches), cut)
            if bar is not None:
                bar.update(1)
                postfix = {"loss": f"{train_loss:.4f}", "seq/s": f"{steps_windows / max(steps_seconds, 1e-9):.0f}"}
                if best_val:
                    postfix[f"best_{tc.selection_metric}"] = f"{best_val[tc.selection_metric]:.4f}"
                bar.set_postfix(postfix)
            resume_state = {
                "model": _cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "stale": stale,
                "torch_rng": torch.get_rng_state(),
                "shuffle_rng": shuffle_rng.get_state(),
                "mask_rng": mask_rng.get_state(),
                "sample_rng": sample_rng.get_state() if device.type == "cpu" else None,
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "train_seconds": time.monotonic() - started,
            }
            if stop:
                break
            if tc.checkpoint_every and epoch % tc.checkpoint_every == 0 and ctx.is_main and best_state is not None:
                _save(checkpoint_path, _checkpoint(
                    model_name, config, split, best_state, best_val, {}, {}, best_epoch, history, tc, seed,
                    device, epochs_run, ctx, resume_state, None,
                ))
        else:
            stopped_by = "epochs"
        if bar is not None:
            bar.close()
        if best_state is None or (ctx.is_main and best_val is None):
            raise RuntimeError("training diverged in its first epoch; no checkpoint to keep")
        seqs_per_s = steps_windows / max(steps_seconds, 1e-9)
        model.load_state_dict(best_state)

    model.eval()
    test: dict[str, float] = {}
    extra: dict[str, float] = {}
    fingerprints = distributed.all_fingerprints(best_state, ctx)
    if ctx.is_main:
        # The test examples are scored once, by the checkpoint chosen on validation only.
        scored = evaluate_examples(
            _scorer(model), split.test_examples, split.vocab, split.max_len, device=device,
            batch_size=tc.eval_batch_size, item_counts=split.train_item_counts,
            exclude_seen=split.exclude_seen,
        )
        extra = {k: v for k, v in scored.items() if k.startswith("popularity_bias_at_")}
        test = {k: v for k, v in scored.items() if k not in extra}
    seconds = time.monotonic() - started

    written: Path | None = None
    if ctx.is_main:
        ddp = {"world_size": ctx.world_size, "rank_fingerprints": fingerprints,
               "ranks_identical": len(set(fingerprints)) == 1} if ctx.enabled else None
        _save(checkpoint_path, _checkpoint(
            model_name, config, split, best_state, best_val or {}, test, extra, best_epoch, history, tc, seed,
            device, epochs_run, ctx, resume_state, ddp,
            summary={"train_seconds": seconds, "sequences_per_second": seqs_per_s, "train_windows": n_windows,
                     "stopped_by": stopped_by, "loss_used": loss_kind if trainable else None, "objective": objective},
        ))
        written = checkpoint_path
    return TrainResult(
        model_name=model_name,
        config=asdict(config),
        checkpoint_path=written,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history,
        val_metrics=best_val or {},
        test_metrics=test,
        device=str(device),
        train_seconds=seconds,
        model=model,
        train_config=tc,
        test_extra=extra,
        train_windows=n_windows,
        sequences_per_second=seqs_per_s,
        stopped_by=stopped_by,
        world_size=ctx.world_size,
    )


def _checkpoint(
    model_name: str, config: Any, split: Split, best_state: dict, best_val: dict | None, test: dict,
    extra: dict, best_epoch: int, history: list, tc: TrainConfig, seed: int, device: torch.device,
    epochs_run: int, ctx: distributed.DistContext, resume_state: dict | None, ddp: dict | None,
    summary: dict | None = None,
) -> dict[str, Any]:
    popular = top_items(split.train_item_counts, N_POPULAR)
    # The TrainConfig as run (seed and device resolved), then what the run did.
    train = tc.to_dict() | {"seed": seed, "device": str(device)} | {
        "epochs_run": epochs_run, "world_size": ctx.world_size,
    } | (summary or {})
    checkpoint = {
        "model_name": model_name,
        "config": asdict(config),
        "state_dict": best_state,
        "item_ids": list(split.vocab.item_ids),
        "popular_item_ids": [split.vocab.item(i) for i, _ in popular],
        "popular_item_counts": [int(c) for _, c in popular],
        "metrics": {"val": best_val or {}, "test": test, "test_extra": extra},
        "best_epoch": best_epoch,
        "history": history,
        "split": split.info(),
        "train": train,
    }
    if resume_state is not None:
        checkpoint["resume"] = resume_state
    if ddp is not None:
        checkpoint["ddp"] = ddp
    return checkpoint


def _save(path: Path, checkpoint: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


# ---------------------------------------------------------------- MLflow


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in values.items()}


def train_and_log(
    settings: Settings,
    run_date: date | str,
    model_name: str = "sasrec",
    epochs: int | None = None,
    *,
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    protocol: str | None = None,
    test_days: float | None = None,
    val_days: float | None = None,
    exclude_seen: str | bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Nightly training stage; returns a JSON-serialisable summary (the DAG's XCom).

    ``epochs`` and keyword ``overrides`` (``batch_size=``, ``lr=``, ...) replace fields of
    ``train_config`` (default ``TrainConfig()``). ``model_name="auto"`` trains every model of
    ``settings.auto_models`` and keeps the best on validation (:mod:`training.auto`). The split's
    protocol, windows and seen-item rule come from the log (:mod:`training.protocol`) unless given.
    """
    from mlflow.entities import Metric, Param, RunTag

    from training.auto import AUTO, auto_model_names, select_on_validation
    from training.protocol import load_split as load_night_split

    tc = (train_config or TrainConfig()).with_overrides(epochs=epochs, **overrides)
    if not tc.min_val_examples:
        tc = tc.with_overrides(min_val_examples=settings.min_eval_examples)
    requested = model_name
    if model_name == AUTO:
        names = auto_model_names(settings.auto_models)
    else:
        model_classes(model_name)  # an unknown name fails here, before any data is read
        names = [model_name]
    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    split = load_night_split(settings, as_of=run_date, protocol=protocol, test_days=test_days,
                             val_days=val_days, exclude_seen=exclude_seen)
    client = mlflow_client(settings)
    experiment_id = get_or_create_experiment(client, settings)
    run = client.create_run(
        experiment_id,
        run_name=f"{model_name}-{run_date}",
        tags={"run_date": run_date, "model_name": model_name, "stage": "train_candidate"},
    )
    run_id = run.info.run_id
    try:
        out_dir = settings.models_dir / run_date / run_id
        baseline = train_model(
            settings, split, "popularity", TrainConfig(epochs=1, device=tc.device, seed=tc.seed),
            checkpoint_path=out_dir / "popularity" / CHECKPOINT_FILE,
        )
        result, candidates = select_on_validation(
            names,
            lambda name, path: train_model(settings, split, name, tc, model_config=model_config,
                                           checkpoint_path=path),
            out_dir / "candidates", tc.selection_metric,
        )
        model_name = result.model_name
        client.set_tag(run_id, "model_name", model_name)
        epochs = tc.epochs
        seed = settings.seed if tc.seed is None else tc.seed

        now = int(time.time() * 1000)
        params = {
            **_flat("train.", {k: v for k, v in tc.to_dict().items() if v is not None}),
            "model_name": model_name, "requested_model": requested, "run_date": run_date, "epochs": epochs,
            "batch_size": tc.batch_size, "lr": tc.lr, "weight_decay": tc.weight_decay,
            "patience": tc.patience, "seed": seed, "device": result.device,
            "selection_metric": f"val_{tc.selection_metric}",
            **_flat("model.", result.config),
            **_flat("split.", {k: v for k, v in split.info().items()
                               if not k.startswith("n_") and not isinstance(v, dict)}),
        }
        metrics = {
            **result.test_metrics,
            **result.test_extra,
            **_flat("val_", result.val_metrics),
            **_flat("popularity_", baseline.test_metrics),
            **_flat("popularity_val_", baseline.val_metrics),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "train_seconds": result.train_seconds,
            **{k: v for k, v in split.info().items() if k.startswith("n_") and isinstance(v, (int, float))},
            **{f"auto_{row['model']}_val_{tc.selection_metric}": row[f"val_{tc.selection_metric}"]
               for row in candidates if row["status"] == "trained" and requested == AUTO},
        }
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        # Curves, one point per epoch, under their own keys: ``val_ndcg_at_10`` above is the
        # selected checkpoint's, and sharing its key would make MLflow show the last epoch's.
        for row in result.history:
            batch.append(Metric("train_loss", row["train_loss"], now, int(row["epoch"])))
            batch.append(Metric(f"epoch_val_{tc.selection_metric}", row[f"val_{tc.selection_metric}"], now,
                                int(row["epoch"])))
        client.log_batch(
            run_id,
            metrics=batch,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("local_checkpoint_path", str(result.checkpoint_path))],
        )
        client.log_dict(run_id, split.info(), "split.json")
        client.log_dict(run_id, {"history": result.history}, "history.json")
        client.log_artifact(run_id, str(result.checkpoint_path), artifact_path=CHECKPOINT_ARTIFACT_DIR)

        ensure_registered_model(client, settings.registered_model_name)
        version = client.create_model_version(
            settings.registered_model_name,
            source=f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT_DIR}",
            run_id=run_id,
            tags={"run_date": run_date, "model_name": model_name,
                  f"test_{tc.selection_metric}": f"{result.test_metrics[tc.selection_metric]:.6f}"},
            description=f"{model_name} trained on data up to {split.val_start.isoformat()} "
                        f"(run {run_date})",
        )
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    return {
        "run_id": run_id,
        "run_date": run_date,
        "model_name": model_name,
        "registered_model_name": settings.registered_model_name,
        "model_version": str(version.version),
        "metrics": result.test_metrics,
        "val_metrics": result.val_metrics,
        "baseline_metrics": baseline.test_metrics,
        "checkpoint_path": str(result.checkpoint_path),
        "artifact_uri": f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT_DIR}",
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "device": result.device,
        "requested_model": requested,
        "candidates": candidates,
        "protocol": split.info()["protocol"],
        "exclude_seen": split.exclude_seen,
        "test_days": split.info()["test_days"],
        "val_days": split.info()["val_days"],
        "split": split.info(),
        "n_train_sequences": len(split.train_sequences),
        "n_val_examples": len(split.val_examples),
        "n_test_examples": len(split.test_examples),
        "n_items": split.vocab.n_items,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--date", type=date.fromisoformat,
                        help="nightly run date (YYYY-MM-DD): warehouse split, MLflow run, registry")
    source.add_argument("--loo", type=Path, metavar="FILE",
                        help="leave-one-out split of a `user item item ...` file; no MLflow")
    parser.add_argument("--model", default="sasrec", choices=["auto", *sorted(MODELS)],
                        help="auto (--date only): train RECSYS_AUTO_MODELS, keep the best on validation")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--max-train-seconds", type=float)
    parser.add_argument("--loss", choices=("full", "sampled"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda (default: RECSYS_DEVICE)")
    parser.add_argument("--max-len", type=int, default=50, help="--loo only")
    parser.add_argument("--model-config", type=json.loads, default=None, metavar="JSON",
                        help='model config overrides, e.g. \'{"d_model": 64}\'')
    parser.add_argument("--out", type=Path, help="--loo: checkpoint folder (default: models dir)")
    parser.add_argument("--resume-from", type=Path, help="--loo: continue this checkpoint's run")
    parser.add_argument("--protocol", choices=("auto", "user_temporal", "session"),
                        help="--date: evaluation protocol (default: RECSYS_EVAL_PROTOCOL)")
    parser.add_argument("--test-days", type=float, help="--date: test window (default: RECSYS_EVAL_TEST_DAYS)")
    parser.add_argument("--val-days", type=float, help="--date: validation window (default: RECSYS_EVAL_VAL_DAYS)")
    parser.add_argument("--exclude-seen", choices=("auto", "true", "false"),
                        help="--date: seen-item rule (default: RECSYS_EXCLUDE_SEEN)")
    parser.add_argument("--no-progress", action="store_true")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    # The per-epoch lines on a terminal too (Airflow's task log has its own handler).
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(debug=args.debug):
        _main(args)


def _main(args: argparse.Namespace) -> None:
    tc = TrainConfig().with_overrides(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        patience=args.patience, eval_every=args.eval_every, max_train_seconds=args.max_train_seconds,
        loss=args.loss, seed=args.seed, device=args.device, progress=False if args.no_progress else None,
    )
    settings = Settings.from_env()
    if args.date is not None:
        summary = train_and_log(settings, args.date, model_name=args.model, train_config=tc,
                                model_config=args.model_config, protocol=args.protocol,
                                test_days=args.test_days, val_days=args.val_days, exclude_seen=args.exclude_seen)
    else:
        from training.loo import load_loo_split

        split = load_loo_split(args.loo, max_len=args.max_len)
        out = args.out or settings.models_dir / "loo" / split.dataset
        result = train_model(settings, split, args.model, tc, model_config=args.model_config,
                             checkpoint_path=out / args.model / CHECKPOINT_FILE, resume_from=args.resume_from)
        if result.checkpoint_path is None:
            return  # a DDP rank other than 0: rank 0 reports
        summary = {
            "model_name": args.model, "checkpoint_path": str(result.checkpoint_path),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped_by": result.stopped_by,
            "val_metrics": result.val_metrics, "test_metrics": result.test_metrics | result.test_extra,
            "train_seconds": result.train_seconds, "sequences_per_second": result.sequences_per_second,
            "world_size": result.world_size, "device": result.device, "split": split.info(),
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
