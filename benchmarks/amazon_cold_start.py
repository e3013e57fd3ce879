"""Cold-start items on Amazon Beauty / Sports: recall@20 on test targets no training event shows.

    python -m benchmarks.amazon_cold_start --dataset Beauty --models covisitation,sasrec [--share 0.05]
        [--split-seed 0] [--epochs N] [--max-minutes M] [--device auto] [--results PATH]

The split is :func:`training.cold_start.cold_start_split`: a seeded random ``--share`` of the catalog
is "new" (erased from training and from every input, kept as test targets), with the item side
information of ``<dataset>_item2attributes.json``, so models that read it (SASRec with
``n_attributes``, the hybrid) can rank the new items. Each model is trained and selected exactly as
in :mod:`benchmarks.amazon_loo` (``run_model``); the selected checkpoint is then scored on the cold
and the warm test targets apart. Records (dataset ``amazon-<dataset>-cold-start``): recall_at_20_cold,
recall_at_20_warm, n_cold_targets, in ``benchmarks/results/amazon_loo.json`` ("the cold-start table").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import amazon_loo, common

NAME = "amazon_loo"  # the records join the Amazon table's file, as a table of their own
MODULE = "benchmarks.amazon_cold_start"
SUFFIX = "-cold-start"  # benchmarks.report_docs tells the cold-start rows by it
K = 20
FIGURES = ((f"recall_at_{K}_cold", "ratio"), (f"recall_at_{K}_warm", "ratio"), ("n_cold_targets", "targets"))


def dataset_label(dataset: str, share: float, seed: int) -> str:
    """``amazon-Beauty-cold-start``; a non-default draw gets a row of its own."""
    from training.cold_start import DEFAULT_SEED, DEFAULT_SHARE

    label = f"amazon-{dataset}{SUFFIX}"
    return label if (share, seed) == (DEFAULT_SHARE, DEFAULT_SEED) else f"{label}[share={share},seed={seed}]"


def cold_figures(out: dict[str, Any], split, checkpoint: Path, device: str) -> dict[str, Any]:
    """The selected checkpoint (the one ``run_model`` scored on the test) on the cold and warm targets."""
    from training.cold_start import cold_start_metrics
    from training.devices import resolve_device
    from training.recommender import load_recommender

    recommender = load_recommender(checkpoint, device=resolve_device(device))
    figures = cold_start_metrics(recommender.model, split, recommender.device, k=K)
    # Same evaluator, same examples: the two parts must add up to the run's own test HR@20.
    n = figures["n_cold_targets"] + figures["n_warm_targets"]
    parts = sum((figures[f"recall_at_{K}_{part}"] or 0.0) * figures[f"n_{part}_targets"] for part in ("cold", "warm"))
    if n and abs(parts / n - out[f"hr_at_{K}"]) > 1e-6:
        print(f"warning: {out['model']}: cold + warm recall@{K} {parts / n:.6f} != test HR@{K} "
              f"{out[f'hr_at_{K}']:.6f} (not the selected checkpoint?)", flush=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dataset", default="Beauty", help="Beauty or Sports_and_Outdoors (or Sports)")
    parser.add_argument("--models", default="covisitation,sasrec", help="comma-separated")
    parser.add_argument("--share", type=float, help="share of the catalog that is new (default 0.05)")
    parser.add_argument("--split-seed", type=int, help="seed of the new-item draw (default 0)")
    parser.add_argument("--epochs", type=int, help="upper bound of epochs (default: per model)")
    parser.add_argument("--max-minutes", type=float, help="training time cap per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=42, help="training seed")
    parser.add_argument("--file", type=Path, help="read this file instead of the shared data set")
    parser.add_argument("--attributes", type=Path, help="item2attributes.json (default: beside the file)")
    parser.add_argument("--results", type=Path, default=amazon_loo.DEFAULT_RESULTS)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model config field (repeatable); recorded as model[key=value,...]")
    args = parser.parse_args(argv)
    import torch

    from training.cold_start import DEFAULT_SEED, DEFAULT_SHARE, load_cold_start_split
    from training.devices import resolve_device
    from training.loo import attributes_file

    dataset = amazon_loo.dataset_name(args.dataset)
    path = args.file or amazon_loo.DATA_DIR / f"{dataset}.txt"
    if not path.exists():
        raise SystemExit(f"no data file at {path} (the public data sets live in ../shared/data)")
    attributes = args.attributes or attributes_file(path)
    if not attributes.exists():
        print(f"no item side information at {attributes}: every model is ID-only here", flush=True)
        attributes = None
    share = DEFAULT_SHARE if args.share is None else args.share
    seed = DEFAULT_SEED if args.split_seed is None else args.split_seed
    split = load_cold_start_split(path, share=share, seed=seed, max_len=amazon_loo.MAX_LEN, attributes=attributes)
    split.dataset = f"{dataset}{SUFFIX}"  # also the checkpoints' folder under the work dir
    work_dir = args.work_dir or common.default_work_dir("amazon_cold_start")
    hardware = common.hardware(packages=("torch",))
    if (device := resolve_device(args.device)).type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    print(f"{dataset}: {split.info()}", flush=True)

    overrides = amazon_loo.parse_model_config(args.model_config)
    label, when = dataset_label(dataset, share, seed), common.now_iso()
    command, records = common.command_line(MODULE, argv), []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        started = time.monotonic()
        out = amazon_loo.run_model(name, split, epochs=args.epochs, max_minutes=args.max_minutes, device=args.device,
                                   seed=args.seed, work_dir=work_dir, progress=False if args.no_progress else None,
                                   config_overrides=overrides)
        # run_model writes the selected checkpoint here.
        checkpoint = work_dir / split.dataset / out["model"] / "checkpoint.pt"
        figures = cold_figures(out, split, checkpoint, args.device)
        print(f"{out['model']}: recall@{K} cold {figures[f'recall_at_{K}_cold']} on {figures['n_cold_targets']} "
              f"targets, warm {figures[f'recall_at_{K}_warm']} ({out['stopped_by'] or 'no training'}, "
              f"{time.monotonic() - started:.0f} s)", flush=True)
        for metric, unit in FIGURES:
            records.append(common.record(metric, figures[metric], unit, dataset=label, model=out["model"],
                                         baseline=None, command=command, hardware=hardware, date=when))
    return common.finish(NAME, args.results, records, key=("dataset", "model"))


if __name__ == "__main__":
    raise SystemExit(main())
