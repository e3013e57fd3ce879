"""RecBole's SASRec on an S3Rec-format file under the leave-one-out protocol of
:mod:`benchmarks.amazon_loo`: that benchmark's external reference.

Run by a throwaway interpreter that has RecBole (not a project dependency; this file imports only
RecBole, torch, numpy and the standard library)::

    /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec.py --file Beauty.txt --work-dir DIR \\
        [--epochs N] [--max-minutes M] [--device auto|cpu|cuda] [--threads T] [--seed 42] --out result.json

It converts the file into RecBole's atomic ``.inter`` file (the timestamp is the item's position
in its user's line), configures SASRec for the same protocol and the hyperparameters of
``MODELS["sasrec"]`` where RecBole has them (:data:`HYPERPARAMETERS`), trains under a wall-time
cap, scores the selected checkpoint on the test targets and writes ``--out`` (:func:`summary`).
Two changes to RecBole's stock behaviour, both needed for the same protocol: the input's items
are excluded from the ranking, and training stops after the epoch that passes ``--max-minutes``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

MAX_LEN = 50
DATASET = "loo"  # RecBole's dataset name: the atomic file is data/<DATASET>/<DATASET>.inter

# benchmarks.amazon_loo MODELS["sasrec"], translated to RecBole's names (test_recbole_sasrec checks
# that the two agree). Ours: d_model 64, 2 blocks, 1 head, dropout 0.3 (embeddings, attention,
# residual), FFN 4 x d_model with GELU, AdamW lr 1e-3 weight decay 0.01, batch 128, gradient norm
# clipped at 1, early stopping after 10 validations without improvement.
HYPERPARAMETERS: dict[str, Any] = {
    "hidden_size": 64, "n_layers": 2, "n_heads": 1, "inner_size": 256, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3, "loss_type": "CE", "learner": "adamw",
    "learning_rate": 1e-3, "weight_decay": 0.01, "train_batch_size": 128, "eval_batch_size": 256,
    "clip_grad_norm": {"max_norm": 1.0},
    # RecBole stops when more than stopping_step evaluations in a row did not improve; the project's
    # loop when `patience` of them did not: patience 10 == stopping_step 9.
    "stopping_step": 9,
}
DEFAULT_EPOCHS = 200  # MODELS["sasrec"]'s epochs


# ---- pure functions (no RecBole, no torch): the conversion and the configuration ----


def read_sequences(path: Path) -> list[tuple[str, list[str]]]:
    """``[(user, [item, ...]), ...]`` of an S3Rec-format file, in file order; blank lines skipped."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}:{number}: a user without items")
            out.append((fields[0], fields[1:]))
    return out


def write_atomic(sequences: Sequence[tuple[str, Sequence[str]]], data_path: Path,
                 dataset: str = DATASET) -> Path:
    """Write ``data_path/<dataset>/<dataset>.inter``: one interaction per line, the timestamp being
    the item's 0-based position in its user's sequence (so sorting by time keeps the file's
    order). Returns the file's path."""
    folder = Path(data_path) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{dataset}.inter"
    users = set()
    with open(target, "w", encoding="utf-8") as handle:
        handle.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, items in sequences:
            if user in users:
                # RecBole would merge the two lines into one user with colliding timestamps.
                raise ValueError(f"user {user!r} occurs on more than one line")
            users.add(user)
            for position, item in enumerate(items):
                handle.write(f"{user}\t{item}\t{position}\n")
    return target


def recbole_config(*, data_path: Path, work_dir: Path, epochs: int = DEFAULT_EPOCHS, seed: int = 42,
                   use_gpu: bool = False, dataset: str = DATASET) -> dict[str, Any]:
    """The RecBole configuration dict (``Config(model="SASRec", dataset=..., config_dict=...)``)."""
    work_dir = Path(work_dir)
    return {
        # everything under the work dir (RecBole's logs are relative to the cwd: run() changes into it)
        "data_path": str(Path(data_path)), "checkpoint_dir": str(work_dir / "saved"), "save_dataset": False,
        "save_dataloaders": False, "log_wandb": False, "show_progress": False,
        "use_gpu": bool(use_gpu), "gpu_id": "0", "seed": seed, "reproducibility": True, "worker": 0,
        # data: the converted file as it is
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "rm_dup_inter": None, "val_interval": None,
        "filter_inter_by_user_or_item": False, "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)", "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        # protocol: leave-one-out, time order, full ranking, NDCG@10 selects
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit"], "topk": [10, 20], "valid_metric": "NDCG@10", "valid_metric_bigger": True,
        "metric_decimal_place": 6,  # RecBole rounds metrics (4 places by default), early stopping included
        "eval_step": 1,
        # required for sequential models; it leaves history items unmasked, which _full_sort_batch_eval redoes
        "repeatable": True,
        "train_neg_sample_args": None,  # full-catalog cross-entropy, no negative sampling
        "epochs": int(epochs),
        **HYPERPARAMETERS,
    }


def summary(*, test: dict[str, float], best_valid: float | None, train_seconds: float, data_seconds: float,
            epochs_run: int, best_epoch: int, stopped_by: str, version: str, torch_version: str, device: str,
            n_users: int, n_items: int, n_interactions: int, n_examples: int, config: dict[str, Any]) -> dict[str, Any]:
    """The JSON written to ``--out``. Epochs are 1-based like the project's; ``train_seconds`` runs
    from the first training step to the end of the test scoring (as the project's does)."""

    def metric(name: str) -> float | None:
        value = test.get(name)
        return None if value is None else float(value)

    return {
        "model": "recbole-sasrec", "recbole_version": version, "torch_version": torch_version,
        "ndcg_at_10": metric("ndcg@10"), "hr_at_10": metric("hit@10"), "ndcg_at_20": metric("ndcg@20"),
        "hr_at_20": metric("hit@20"), "val_ndcg_at_10": None if best_valid is None else float(best_valid),
        "train_seconds": float(train_seconds), "data_seconds": float(data_seconds), "epochs_run": int(epochs_run),
        "best_epoch": int(best_epoch), "stopped_by": stopped_by, "device": device, "n_users": n_users,
        "n_items": n_items, "n_interactions": n_interactions,
        "n_examples": n_examples,  # RecBole's (input, target) examples: every item but each user's first
        "config": {k: v for k, v in config.items() if k in HYPERPARAMETERS or k in ("epochs", "MAX_ITEM_LIST_LENGTH")},
    }


# ---- the run (imports RecBole) ----


class _OutOfTime(Exception):
    """Raised from fit()'s per-validation callback once an epoch ended past the time cap (that epoch is
    still validated and saved if best); run() catches it and scores the best checkpoint as usual."""


def _patch_numpy() -> None:
    # numpy 2 removed np.float_ & co, which RecBole 1.2.1's Config aliases at start: put them back.
    import numpy as np

    for name, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_),
                        ("int_", np.int64), ("bool_", np.bool_), ("object_", np.object_), ("str_", np.str_)):
        if not hasattr(np, name):
            setattr(np, name, value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    _patch_numpy()
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    sequences = read_sequences(Path(args.file))
    data_path = work_dir / "data"
    write_atomic(sequences, data_path)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    use_gpu = torch.cuda.is_available() and args.device != "cpu"
    config_dict = recbole_config(data_path=data_path, work_dir=work_dir, epochs=args.epochs, seed=args.seed,
                                 use_gpu=use_gpu)
    max_seconds = args.max_minutes * 60 if args.max_minutes else None

    sys.argv = sys.argv[:1]  # RecBole's Config also reads `--key=value` options from the command line
    os.chdir(work_dir)  # RecBole writes ./log and ./log_tensorboard relative to the current directory
    data_started = time.monotonic()
    config = Config(model="SASRec", dataset=DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    # pandas 3 warns that Dataset._fill_nan no longer fills in place: the file has no missing values.
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    data_seconds = time.monotonic() - data_started

    class _CappedTrainer(Trainer):
        def __init__(self, config, model):
            super().__init__(config, model)
            self.fit_started = time.monotonic()
            self.out_of_time = False
            self.epochs_run = 0
            self.best_epoch = 0
            self.stopped_by = "epochs"

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
            self.epochs_run = epoch_idx + 1
            if max_seconds is not None and time.monotonic() - self.fit_started >= max_seconds:
                self.out_of_time = True
            return loss

        def after_validation(self, epoch_idx: int, valid_score: float) -> None:
            # fit() calls this after early_stopping(): cur_step == 0 means this epoch improved.
            if self.cur_step == 0 and valid_score == self.best_valid_score:
                self.best_epoch = epoch_idx + 1
            if self.cur_step > self.stopping_step:
                self.stopped_by = "patience"  # fit() breaks right after this call
            elif self.out_of_time:
                self.stopped_by = "time"
                raise _OutOfTime

        def _full_sort_batch_eval(self, batched_data):
            # As the project's evaluator: the input sequence's items are not ranked (RecBole excludes
            # history items only for non-sequential models).
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            inputs = interaction[self.model.ITEM_SEQ].to(scores.device)  # [B, L]
            scores.scatter_(1, inputs, float("-inf"))  # [B, n_items]
            return interaction, scores, positive_u, positive_i

        def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
            if load_best_model:
                # torch >= 2.6 loads weights_only, which RecBole's checkpoint (holding its Config) fails:
                # load the file this run wrote (trusted) ourselves.
                checkpoint = torch.load(model_file or self.saved_model_file, map_location=self.device,
                                        weights_only=False)
                self.model.load_state_dict(checkpoint["state_dict"])
                self.model.load_other_parameter(checkpoint.get("other_parameter"))
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    trainer = _CappedTrainer(config, model)
    trainer.fit_started = time.monotonic()
    try:
        best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                    callback_fn=trainer.after_validation)
    except _OutOfTime:
        best_valid = trainer.best_valid_score
    test = trainer.evaluate(test_data, load_best_model=True)
    train_seconds = time.monotonic() - trainer.fit_started
    return summary(
        test=dict(test), best_valid=None if trainer.best_epoch == 0 else best_valid,
        train_seconds=train_seconds, data_seconds=data_seconds, epochs_run=trainer.epochs_run,
        best_epoch=trainer.best_epoch, stopped_by=trainer.stopped_by, version=recbole.__version__,
        torch_version=torch.__version__, device=str(config["device"]), n_users=dataset.user_num - 1,
        n_items=dataset.item_num - 1, n_interactions=sum(len(items) for _, items in sequences),
        n_examples=len(dataset.inter_feat), config=config_dict,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--file", type=Path, required=True, help="S3Rec-format file (user item item ...)")
    parser.add_argument("--work-dir", type=Path, required=True, help="atomic files, checkpoints and logs go here")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--epochs", type=int, default=None, help=f"upper bound of epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time cap")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or DEFAULT_EPOCHS
    args.file = args.file.resolve()
    out = args.out.resolve()
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "config"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
