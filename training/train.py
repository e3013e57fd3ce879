"""The one training loop every architecture shares, and its MLflow run + registry version.

``train_model`` trains any registered model on a :class:`~training.data.TemporalSplit` (AdamW,
full-softmax loss, early stopping on validation NDCG@10), keeps the best epoch's weights chosen on
validation only, reports the test metrics of that checkpoint and writes the checkpoint file.
``train_and_log`` is the nightly stage: split the warehouse, train the popularity baseline and the
candidate, log both to one MLflow run and register the candidate's checkpoint as a new version.

    python -m training.train --date 2026-11-20 --model sasrec --epochs 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.settings import Settings
from training.data import TemporalSplit, load_split
from training.evaluate import evaluate_examples
from training.losses import full_softmax_loss
from training.models import MODELS, build_model, make_config
from training.models.baselines import PopularityModel, top_items

EXPERIMENT_NAME = "nightly_recsys"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"
SELECTION_METRIC = "ndcg_at_10"
N_POPULAR = 100


@dataclass
class TrainResult:
    model_name: str
    config: dict[str, Any]
    checkpoint_path: Path
    best_epoch: int  # 0 for a model without trainable parameters
    epochs_run: int
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, val metrics
    val_metrics: dict[str, float]  # of the best checkpoint
    test_metrics: dict[str, float]  # of the best checkpoint, computed once after selection
    device: str
    train_seconds: float
    model: nn.Module = field(repr=False)  # best weights, eval mode


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("RECSYS_DEVICE=cuda but CUDA is not available")
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


def _build(model_name: str, split: TemporalSplit, overrides: dict[str, Any] | None) -> tuple[Any, nn.Module]:
    config = make_config(
        model_name, n_items=split.vocab.n_items, max_len=split.max_len, **(overrides or {})
    )
    if model_name == "popularity":
        return config, PopularityModel.from_counts(config, split.train_item_counts)
    return config, build_model(model_name, config)


def train_model(
    settings: Settings,
    split: TemporalSplit,
    model_name: str = "sasrec",
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    patience: int = 3,
    model_config: dict[str, Any] | None = None,
    checkpoint_path: Path | None = None,
) -> TrainResult:
    """Train ``model_name`` on ``split``; keep the epoch with the best validation NDCG@10.

    Deterministic for a given ``settings.seed`` on CPU (seeded init, dropout and shuffling).
    On CUDA the forward/backward runs under bf16 autocast; evaluation is always fp32.
    """
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)  # parameter init and dropout masks
    shuffle_rng = torch.Generator().manual_seed(settings.seed)
    config, model = _build(model_name, split, model_config)
    model.to(device)
    started = time.monotonic()

    def validate() -> dict[str, float]:
        model.eval()
        return evaluate_examples(
            _scorer(model), split.val_examples, split.vocab, split.max_len, device=device
        )

    history: list[dict[str, float]] = []
    trainable = any(p.requires_grad for p in model.parameters())
    if not trainable:
        # Nothing to optimise: the "best checkpoint" is the model as built from training counts.
        best_val, best_epoch, epochs_run = validate(), 0, 0
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        if not split.val_examples:
            raise ValueError("no validation examples: cannot select a checkpoint")
        inputs, targets = training_windows(split.train_sequences, split.max_len)  # [W, L] x2
        optimizer = _optimizer(model, lr, weight_decay)
        use_bf16 = device.type == "cuda"
        best_val, best_epoch, best_state, epochs_run, stale = None, 0, None, 0, 0
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(inputs.shape[0], generator=shuffle_rng)  # [W]
            loss_sum, n_targets = 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]  # [B]
                x, y = inputs[idx], targets[idx]  # [B, max_len] x2
                # Drop the columns that are padding in every row of this batch.
                width = int((x != 0).sum(dim=1).max())
                x, y = x[:, -width:].to(device), y[:, -width:].to(device)  # [B, L] x2
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    hidden = model(x)  # [B, L, D]
                    loss = full_softmax_loss(hidden, y, model.output_embeddings)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                n = int((y != 0).sum())
                loss_sum += loss.item() * n
                n_targets += n
            val = validate()
            epochs_run = epoch
            train_loss = loss_sum / n_targets
            history.append({"epoch": epoch, "train_loss": train_loss} | {f"val_{k}": v for k, v in val.items()})
            if not math.isfinite(train_loss):
                break  # diverged: keep whatever was best before
            if best_val is None or val[SELECTION_METRIC] > best_val[SELECTION_METRIC]:
                best_val, best_epoch, stale = val, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    break
        if best_state is None or best_val is None:
            raise RuntimeError("training diverged in its first epoch; no checkpoint to keep")
        model.load_state_dict(best_state)

    model.eval()
    # The test window is scored once, by the checkpoint chosen on validation only.
    test = evaluate_examples(_scorer(model), split.test_examples, split.vocab, split.max_len, device=device)
    seconds = time.monotonic() - started

    popular = top_items(split.train_item_counts, N_POPULAR)
    checkpoint = {
        "model_name": model_name,
        "config": asdict(config),
        "state_dict": best_state,
        "item_ids": list(split.vocab.item_ids),
        "popular_item_ids": [split.vocab.item(i) for i, _ in popular],
        "popular_item_counts": [int(c) for _, c in popular],
        "metrics": {"val": best_val, "test": test},
        "best_epoch": best_epoch,
        "history": history,
        "split": split.info(),
        "train": {
            "epochs": epochs, "epochs_run": epochs_run, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "patience": patience, "seed": settings.seed,
            "device": str(device), "selection_metric": f"val_{SELECTION_METRIC}",
        },
    }
    if checkpoint_path is None:
        checkpoint_path = settings.models_dir / (split.as_of or "latest") / f"{model_name}.pt"
    checkpoint_path = Path(checkpoint_path)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, checkpoint_path)
    return TrainResult(
        model_name=model_name,
        config=asdict(config),
        checkpoint_path=checkpoint_path,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history,
        val_metrics=best_val,
        test_metrics=test,
        device=str(device),
        train_seconds=seconds,
        model=model,
    )


# ---------------------------------------------------------------- MLflow


def mlflow_client(settings: Settings):
    from mlflow import MlflowClient

    if settings.mlflow_uri.startswith("sqlite:///"):
        # SQLite creates the database file but not its folder.
        Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def get_or_create_experiment(client, settings: Settings, name: str = EXPERIMENT_NAME) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
    # An explicit location keeps artifacts under $RECSYS_HOME, not under the process's cwd.
    return client.create_experiment(name, artifact_location=settings.mlflow_artifact_root.as_uri())


def ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(
            name, description="Next-item recommender; alias `champion` marks the serving version."
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # created concurrently: fine
            raise


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in values.items()}


def train_and_log(
    settings: Settings,
    run_date: date | str,
    model_name: str = "sasrec",
    epochs: int = 20,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    patience: int = 3,
    model_config: dict[str, Any] | None = None,
    test_days: int = 1,
    val_days: int = 1,
) -> dict[str, Any]:
    """Nightly training stage; returns a JSON-serialisable summary (the DAG's XCom)."""
    from mlflow.entities import Metric, Param, RunTag

    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    split = load_split(settings, as_of=run_date, test_days=test_days, val_days=val_days)
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
            settings, split, "popularity", epochs=1,
            checkpoint_path=out_dir / "popularity" / CHECKPOINT_FILE,
        )
        result = train_model(
            settings, split, model_name, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, patience=patience, model_config=model_config,
            checkpoint_path=out_dir / CHECKPOINT_ARTIFACT_DIR / CHECKPOINT_FILE,
        )

        now = int(time.time() * 1000)
        params = {
            "model_name": model_name, "run_date": run_date, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "patience": patience, "seed": settings.seed, "device": result.device,
            "selection_metric": f"val_{SELECTION_METRIC}",
            **_flat("model.", result.config),
            **_flat("split.", {k: v for k, v in split.info().items() if not k.startswith("n_")}),
        }
        metrics = {
            **result.test_metrics,
            **_flat("val_", result.val_metrics),
            **_flat("popularity_", baseline.test_metrics),
            **_flat("popularity_val_", baseline.val_metrics),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "train_seconds": result.train_seconds,
            **{k: v for k, v in split.info().items() if k.startswith("n_")},
        }
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        # Curves, one point per epoch, under their own keys: ``val_ndcg_at_10`` above is the
        # selected checkpoint's, and sharing its key would make MLflow show the last epoch's.
        for row in result.history:
            batch.append(Metric("train_loss", row["train_loss"], now, int(row["epoch"])))
            batch.append(Metric(f"epoch_val_{SELECTION_METRIC}", row[f"val_{SELECTION_METRIC}"], now,
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
                  f"test_{SELECTION_METRIC}": f"{result.test_metrics[SELECTION_METRIC]:.6f}"},
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
        "test_days": test_days,
        "val_days": val_days,
        "split": split.info(),
        "n_train_sequences": len(split.train_sequences),
        "n_val_examples": len(split.val_examples),
        "n_test_examples": len(split.test_examples),
        "n_items": split.vocab.n_items,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", required=True, type=date.fromisoformat, help="run date (YYYY-MM-DD)")
    parser.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    summary = train_and_log(
        Settings.from_env(), args.date, model_name=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
