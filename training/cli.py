"""The training command line: ``python -m training.train`` runs :func:`main`.

``--date``: the nightly stage on the warehouse split (:func:`training.tracking.train_and_log`:
the popularity baseline and the candidate trained by the shared loop, both logged to one MLflow
run, the candidate registered as a new version). ``--loo FILE``: a leave-one-out split of a
``user item item ...`` file, trained by :func:`training.train.train_model` into a checkpoint
file, no MLflow. Prints a JSON summary. Data parallel under ``torchrun``.

    python -m training.train --date 2026-11-20 --model sasrec --epochs 20
    python -m training.train --loo ../shared/data/amazon/Beauty.txt --model sasrec --out /tmp/run
    torchrun --nproc_per_node=2 -m training.train --loo FILE --model sasrec --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path

from core.cli_errors import add_debug_flag, user_errors
from core.settings import Settings
from training.config import TrainConfig
from training.models import MODELS
from training.tracking import CHECKPOINT_FILE, train_and_log
from training.train import train_model


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
