"""RecBole's SASRec on an S3Rec-format file, under the leave-one-out protocol of
:mod:`benchmarks.amazon_loo`: the external reference point of that benchmark.

Run by a throwaway interpreter that has RecBole installed (RecBole is not a dependency of the
project; this file imports only RecBole, torch, the standard library and numpy, the last to patch
RecBole for numpy 2)::

    /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec.py --file Beauty.txt --work-dir DIR \\
        [--epochs N] [--max-minutes M] [--device auto|cpu|cuda] [--threads T] [--seed 42] --out result.json

What it does:

* converts the file (one user per line, ``user item item ...`` in time order) into the RecBole
  atomic file ``DIR/data/<name>/<name>.inter`` (``user_id:token item_id:token timestamp:float``,
  the timestamp being the item's position in its user's line, so RecBole's time order is the
  file's order);
* configures RecBole's SASRec for the same protocol as the project's benchmark: leave-one-out per
  user (``LS: valid_and_test``, time order), inputs of at most 50 items, the whole catalog ranked,
  validation NDCG@10 selecting the checkpoint, full-catalog cross-entropy, no filtering of users or
  items (the file is already 5-core), and the hyperparameters of ``MODELS["sasrec"]`` of
  :mod:`benchmarks.amazon_loo` where RecBole has an equivalent (:data:`HYPERPARAMETERS`);
* trains with a wall-time cap (RecBole has none; see :class:`_OutOfTime`), scores the selected
  checkpoint once on the test targets and writes ``--out`` (JSON, see :func:`summary`).

Differences from RecBole's stock behaviour, both needed for the same protocol:

* the items of the input sequence are excluded from the full ranking (RecBole only excludes
  them for general, non-sequential models; :mod:`training.evaluate` excludes them);
* training stops after the epoch that passes ``--max-minutes``, like the project's loop.

Remaining differences from the project's SASRec (inherent to RecBole, not settings): RecBole
trains on one target per example (every prefix of every training sequence is an example), the
project on every position of a window; RecBole's blocks are post-LayerNorm, weight decay applies
to every parameter, Adam's betas are (0.9, 0.999) rather than (0.9, 0.98), a validation score equal
to the best moves the checkpoint to the later epoch (ours keeps the earlier); an epoch is a pass over
the prefixes, so epoch counts are not comparable, while wall time to the selected checkpoint is.
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
    "hidden_size": 64,
    "n_layers": 2,
    "n_heads": 1,
    "inner_size": 256,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.3,
    "attn_dropout_prob": 0.3,
    "loss_type": "CE",
    "learner": "adamw",
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "train_batch_size": 128,
    "eval_batch_size": 256,
    "clip_grad_norm": {"max_norm": 1.0},
    # RecBole stops when more than stopping_step evaluations in a row did not improve
    # (recbole.utils.early_stopping: cur_step > max_step); the project's loop stops when
    # `patience` of them did not (stale >= patience). patience 10 == stopping_step 9.
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
        # where things go: everything under the work dir (logs and tensorboard are relative to the
        # current directory in RecBole, so run() also changes into the work dir)
        "data_path": str(Path(data_path)),
        "checkpoint_dir": str(work_dir / "saved"),
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "show_progress": False,
        # environment
        "use_gpu": bool(use_gpu),
        "gpu_id": "0",
        "seed": seed,
        "reproducibility": True,
        "worker": 0,
        # data: the converted file as it is
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        # protocol: leave-one-out, time order, full ranking, NDCG@10 selects
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "metric_decimal_place": 6,  # RecBole rounds metrics (4 places by default), early stopping included
        "eval_step": 1,
        # RecBole requires repeatable=True for sequential models; it means history items are not
        # masked in the ranking, which _CappedTrainer._full_sort_batch_eval puts back.
        "repeatable": True,
        # training: full-catalog cross-entropy, no negative sampling
        "train_neg_sample_args": None,
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
        "model": "recbole-sasrec",
        "recbole_version": version,
        "torch_version": torch_version,
        "ndcg_at_10": metric("ndcg@10"),
        "hr_at_10": metric("hit@10"),
        "ndcg_at_20": metric("ndcg@20"),
        "hr_at_20": metric("hit@20"),
        "val_ndcg_at_10": None if best_valid is None else float(best_valid),
        "train_seconds": float(train_seconds),
        "data_seconds": float(data_seconds),
        "epochs_run": int(epochs_run),
        "best_epoch": int(best_epoch),
        "stopped_by": stopped_by,
        "device": device,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": n_interactions,
        "n_examples": n_examples,  # RecBole's (input, target) examples: every item but each user's first
        "config": {k: v for k, v in config.items() if k in HYPERPARAMETERS or k in ("epochs", "MAX_ITEM_LIST_LENGTH")},
    }


# ---- the run (imports RecBole) ----


class _OutOfTime(Exception):
    """Raised from fit()'s per-epoch callback to end training at the time cap.

    How the cap works: RecBole's ``Trainer.fit`` has no wall-time limit, but it calls
    ``callback_fn(epoch, valid_score)`` after every validation, once the epoch's checkpoint (when it
    improved) is saved. ``_CappedTrainer._train_epoch`` notes when the time since fit() began passes
    the cap at the end of an epoch's training; that epoch is still validated (and saved if best),
    and then the callback raises this exception, which run() catches. The best validated checkpoint
    is on disk as RecBole saved it, and the test scoring loads it, as after a normal stop.
    """


def _patch_numpy() -> None:
    # numpy 2 removed np.float_, np.complex_ and np.unicode_; RecBole 1.2.1's
    # Config.compatibility_settings() aliases np.float = np.float_ (and so on) and dies with an
    # AttributeError before anything runs. Put the removed names back (the same types) first;
    # RecBole's own aliases (np.float, np.int, np.bool, ...) then work as it expects.
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
    # pandas 3 (copy-on-write) warns that Dataset._fill_nan's `feat[field].fillna(..., inplace=True)`
    # no longer fills anything. The converted file has no missing values, so nothing needs filling.
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
            # The same protocol as the project's evaluator: the items of the input sequence (at
            # most MAX_ITEM_LIST_LENGTH, 0 = padding) are not ranked. RecBole excludes history
            # items only for non-sequential models.
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            inputs = interaction[self.model.ITEM_SEQ].to(scores.device)  # [B, L]
            scores.scatter_(1, inputs, float("-inf"))  # [B, n_items]
            return interaction, scores, positive_u, positive_i

        def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
            if load_best_model:
                # torch >= 2.6 loads with weights_only=True by default, and RecBole's checkpoint
                # holds its Config object, so Trainer.evaluate(load_best_model=True) fails with an
                # UnpicklingError. Load the file this run wrote ourselves (trusted), then evaluate.
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
