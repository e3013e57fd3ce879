"""``recsys`` commands for models: train a candidate, evaluate it against the champion, promote
it, roll the champion back, precompute the champion's lists.

The nightly chain by hand, each step's JSON result feeding the next:

    recsys train --date 2026-11-20 > candidate.json
    recsys evaluate --date 2026-11-20 --candidate candidate.json > decision.json
    recsys promote --decision decision.json

PyTorch and MLflow are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import UserError
from core.names import MODEL_NAMES
from pipeline.cli.app import (
    DATE_METAVAR, Protocol, RunDate, SeenRule, app, choice, example, plain, print_json, read_json, settings,
)

# Keys of `recsys train --date`'s summary that promotion reads.
CANDIDATE_KEYS = ("model_version", "metrics", "baseline_metrics")
ModelName = choice("ModelName", ["auto", *sorted(MODEL_NAMES)])
Loss = choice("Loss", ("full", "sampled"))


@app.command(epilog=example(
    "recsys train --date 2026-11-20 --model sasrec --epochs 20 > candidate.json",
    "recsys train --loo ../shared/data/amazon/Beauty.txt --model sasrec --out /tmp/run",
))
def train(
    run_date: Annotated[Optional[date], typer.Option(
        "--date", parser=date.fromisoformat, metavar=DATE_METAVAR,
        help="nightly run date: warehouse split, MLflow run, registered version")] = None,
    loo: Annotated[Optional[Path], typer.Option(
        metavar="FILE", help="leave-one-out split of a `user item item ...` file; no MLflow")] = None,
    model: Annotated[ModelName, typer.Option(
        help="auto (--date only): train RECSYS_AUTO_MODELS, keep the best on validation")] = "sasrec",
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: Optional[float] = None,
    patience: Optional[int] = None,
    eval_every: Optional[int] = None,
    max_train_seconds: Optional[float] = None,
    loss: Optional[Loss] = None,
    seed: Optional[int] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda (default: RECSYS_DEVICE)")] = None,
    max_len: Annotated[int, typer.Option(help="--loo only")] = 50,
    model_config: Annotated[Optional[str], typer.Option(
        metavar="JSON", help='model config overrides, e.g. \'{"d_model": 64}\'')] = None,
    out: Annotated[Optional[Path], typer.Option(help="--loo: checkpoint folder (default: models dir)")] = None,
    resume_from: Annotated[Optional[Path], typer.Option(help="--loo: continue this checkpoint's run")] = None,
    protocol: Annotated[Optional[Protocol], typer.Option(
        help="--date: evaluation protocol (default: RECSYS_EVAL_PROTOCOL)")] = None,
    test_days: Annotated[Optional[float], typer.Option(
        help="--date: test window (default: RECSYS_EVAL_TEST_DAYS)")] = None,
    val_days: Annotated[Optional[float], typer.Option(
        help="--date: validation window (default: RECSYS_EVAL_VAL_DAYS)")] = None,
    exclude_seen: Annotated[Optional[SeenRule], typer.Option(
        help="--date: seen-item rule (default: RECSYS_EXCLUDE_SEEN)")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Train a model and print its summary as JSON (what `python -m training.train` does).

    --date: the popularity baseline and the candidate on the warehouse's split, logged to one
    MLflow run, the candidate registered as a new version (the input of `recsys evaluate`).
    --loo FILE: a leave-one-out split of a `user item item ...` file into a checkpoint, no MLflow.
    """
    from training.config import TrainConfig
    from training.tracking import CHECKPOINT_FILE, train_and_log
    from training.train import train_model

    model_name, loss_name = plain(model), plain(loss)
    if (run_date is None) == (loo is None):
        raise typer.BadParameter("give exactly one of --date and --loo", param_hint="--date/--loo")
    try:
        overrides = None if model_config is None else json.loads(model_config)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--model-config") from None
    tc = TrainConfig().with_overrides(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience,
        eval_every=eval_every, max_train_seconds=max_train_seconds, loss=loss_name, seed=seed, device=device,
        progress=False if no_progress else None,
    )
    config = settings()
    if run_date is not None:
        summary = train_and_log(config, run_date, model_name=model_name, train_config=tc, model_config=overrides,
                                protocol=plain(protocol), test_days=test_days, val_days=val_days,
                                exclude_seen=plain(exclude_seen))
    else:
        from training.loo import load_loo_split

        split = load_loo_split(loo, max_len=max_len)
        folder = out or config.models_dir / "loo" / split.dataset
        result = train_model(config, split, model_name, tc, model_config=overrides,
                             checkpoint_path=folder / model_name / CHECKPOINT_FILE, resume_from=resume_from)
        if result.checkpoint_path is None:
            return  # a DDP rank other than 0: rank 0 reports
        summary = {
            "model_name": model_name, "checkpoint_path": str(result.checkpoint_path),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped_by": result.stopped_by,
            "val_metrics": result.val_metrics, "test_metrics": result.test_metrics | result.test_extra,
            "train_seconds": result.train_seconds, "sequences_per_second": result.sequences_per_second,
            "world_size": result.world_size, "device": result.device, "split": split.info(),
        }
    print(json.dumps(summary, indent=2, default=str), flush=True)


@app.command(epilog=example("recsys evaluate --date 2026-11-20 --candidate candidate.json > decision.json"))
def evaluate(
    run_date: RunDate,
    candidate: Annotated[Path, typer.Option(
        metavar="FILE", help="the JSON `recsys train --date` printed (- reads stdin)")],
) -> None:
    """Decide whether a trained candidate may replace the champion: both scored on the same fresh
    held-out window, every rule a named check (the quality gate's verdict of the date included).
    Prints the decision as JSON, the input of `recsys promote`; nothing moves yet."""
    from pipeline.stages import evaluate_candidate

    fix = f"save the candidate with `recsys train --date {run_date} > candidate.json` and pass that file"
    summary = read_json(candidate, "candidate summary", fix)
    missing = [key for key in CANDIDATE_KEYS if not isinstance(summary, dict) or key not in summary]
    if missing:
        raise UserError(f"{candidate} is not a registered candidate's summary (no {', '.join(missing)})", fix=fix)
    print_json(evaluate_candidate(settings(), run_date, summary))


@app.command(epilog=example("recsys promote --decision decision.json"))
def promote(
    decision: Annotated[Path, typer.Option(
        metavar="FILE", help="the JSON `recsys evaluate` printed (- reads stdin)")],
) -> None:
    """Apply a promotion decision: move the champion alias when every check passed (and the
    champion and the artifact are still the ones evaluated), record the decision either way."""
    from registry.promotion import PromotionDecision

    from pipeline.stages import promote_candidate

    fix = "save the decision with `recsys evaluate --date D --candidate candidate.json > decision.json`"
    record = read_json(decision, "decision", fix)
    try:
        PromotionDecision(**record)
    except TypeError as exc:
        raise UserError(f"{decision} is not a decision of `recsys evaluate` ({exc})", fix=fix) from exc
    result = promote_candidate(settings(), record.get("run_date") or "", record)
    print_json(result)


@app.command(epilog=example("recsys rollback --to-previous --reason 'NDCG dropped in the A/B test'",
                            "recsys rollback --version 3 --reason 'back to v3'"))
def rollback(
    version: Annotated[Optional[str], typer.Option(help="registered model version to serve")] = None,
    to_previous: Annotated[bool, typer.Option(
        "--to-previous", help="the latest earlier version that was champion")] = False,
    reason: Annotated[str, typer.Option(help="why (kept in the record)")] = "",
    force: Annotated[bool, typer.Option(
        "--force", help="serve a version that has no passing decision record (recorded as forced)")] = False,
) -> None:
    """Move the champion alias back to an earlier version; exit 1 when the rollback is refused."""
    from registry.rollback import RollbackRefused
    from registry.rollback import rollback as roll_back

    if (version is None) == (not to_previous):
        raise typer.BadParameter("give exactly one of --version and --to-previous", param_hint="--version/--to-previous")
    try:
        result = roll_back(settings(), version, to_previous=to_previous, reason=reason, force=force)
    except RollbackRefused as exc:
        print(json.dumps(exc.record, indent=2, default=str), file=sys.stderr)
        print(f"rollback refused: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(1) from None
    if result["forced"]:
        print(f"WARNING: forced rollback: v{result['target_version']} never passed its checks "
              f"({result['forced_because']}); it serves now", file=sys.stderr)
    print_json(result)


@app.command(epilog=example("recsys precompute", "recsys precompute --k 50"))
def precompute(
    k: Annotated[Optional[int], typer.Option(min=1, help="list length (default RECSYS_PRECOMPUTE_K)")] = None,
) -> None:
    """Precompute the champion's top-K for every active user (served with RECSYS_SERVING_MODE=precomputed)."""
    from serving.precompute import precompute as precompute_lists

    print_json(precompute_lists(settings(), k))
