"""The checkpoint file the training loop writes: what it holds, how it is written, how a run resumes.

A checkpoint is one ``torch.save``'d dict: the model's name, config and selected weights, its
item vocabulary and most popular items (the serving fallback), the metrics of the selected
epoch, the history, the split and the train config as run; a resumable one also holds the last
epoch's weights, optimizer and RNG states (``"resume"``), a DDP one its ranks' fingerprints.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.data import Split
from training.models.baselines import top_items

N_POPULAR = 100


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def build_checkpoint(
    model_name: str, config: Any, split: Split, state: dict, val: dict | None, test: dict, extra: dict,
    best_epoch: int, history: list, train: dict[str, Any], resume: dict | None = None, ddp: dict | None = None,
) -> dict[str, Any]:
    """``train``: the TrainConfig as run (seed and device resolved), then what the run did."""
    popular = top_items(split.train_item_counts, N_POPULAR)
    checkpoint = {
        "model_name": model_name,
        "config": asdict(config),
        "state_dict": state,
        "item_ids": list(split.vocab.item_ids),
        "popular_item_ids": [split.vocab.item(i) for i, _ in popular],
        "popular_item_counts": [int(c) for _, c in popular],
        "metrics": {"val": val or {}, "test": test, "test_extra": extra},
        "best_epoch": best_epoch,
        "history": history,
        "split": split.info(),
        "train": train,
    }
    if resume is not None:
        checkpoint["resume"] = resume
    if ddp is not None:
        checkpoint["ddp"] = ddp
    return checkpoint


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Written to a temporary file, then renamed: a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def load_resumable(path: Path | str, model_name: str) -> dict[str, Any]:
    """A checkpoint of ``model_name`` that :func:`save_checkpoint` wrote with its resume state."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if state.get("model_name") != model_name or "resume" not in state:
        raise ValueError(f"{path} is not a resumable {model_name} checkpoint")
    return state
