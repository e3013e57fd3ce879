"""Leave-one-out full-ranking accuracy on Amazon Beauty / Sports, against the published numbers.

    python -m benchmarks.amazon_loo --dataset Beauty --models sasrec,popularity [--epochs N]
        [--max-minutes M] [--device auto] [--results PATH] [--recbole-python PATH] [--merge RESULTS ...]

Each model is trained on the S3Rec 5-core file split leave-one-out (:mod:`training.loo`) with early
stopping on validation NDCG@10; the selected checkpoint is scored once on the test targets against
the whole catalog. ``FIGURES`` per model go to ``benchmarks/results/amazon_loo.json`` (replacing the
same (dataset, model) rows; ``--model-config`` makes a row of its own). ``--recbole-python`` also
runs RecBole's SASRec (``recbole_sasrec.py``) on the same split, recorded as ``recbole-sasrec`` with
ours/RecBole ratios; ``--merge`` folds results files made on another machine into ``--results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common
from benchmarks.seed_rows import SEED_FIGURES, seed_label, seed_summaries, split_seed_label

NAME = "amazon_loo"
MODULE = "benchmarks.amazon_loo"
DATA_DIR = common.REPO_ROOT.parent / "shared" / "data" / "amazon"
DEFAULT_RESULTS = common.RESULTS_DIR / f"{NAME}.json"
DATASETS = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "sports_and_outdoors": "Sports_and_Outdoors"}
MAX_LEN = 50

# benchmark name -> (registered model, model config overrides, TrainConfig overrides). SASRec follows
# the full-softmax recipe of Klenitskiy & Vasilev (RecSys'23) / eSASRec (RecSys'25); other registry
# models run with their defaults.
RECIPE: dict[str, Any] = {  # the TrainConfig overrides every sequence model below shares
    "batch_size": 128, "lr": 1e-3, "weight_decay": 0.01, "epochs": 200, "patience": 10,
    "eval_every": 1, "length_buckets": 32, "loss": "full",
}
SASREC = {"d_model": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.3}
TIGER_CPU = {"d_model": 64, "n_heads": 2, "n_layers": 2, "n_decoder_layers": 2, "dropout": 0.1, "max_items": 20,
             "beam_size": 20, "codebook_size": 256, "levels": 3, "collision_codes": 128}
# The other sequence models on SASRec's budget and loss, so the table compares architectures.
# The default recipe (issue 22): the hybrid of SASRec with item side information and co-visitation,
# the same settings for every data set; its blend weight is chosen on validation by the loop.
DEFAULT_RECIPE = "hybrid"
MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "popularity": ("popularity", {}, {}),
    "hybrid": ("hybrid", SASREC, RECIPE),
    "sasrec-side": ("sasrec", SASREC, RECIPE),  # SASRec with the item attributes
    "sasrec": ("sasrec", SASREC | {"n_attributes": 0}, RECIPE),  # ID embeddings only
    "sasrec-sampled": ("sasrec", SASREC, RECIPE | {"loss": "sampled", "n_negatives": 256}),
    "hstu": ("hstu", SASREC, RECIPE),
    "gru4rec": ("gru4rec", {"d_model": 64, "n_layers": 1, "dropout": 0.3}, RECIPE),
    "bert4rec": ("bert4rec", {"d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.3, "mask_prob": 0.2},
                 RECIPE | {"mask_last_prob": 0.1}),
    # TIGER-style generative retrieval (training.models.tiger): reduced to SASRec's width so that it
    # trains on 2 CPU cores within the time cap; "tiger-full" is the paper's size (4 + 4 layers,
    # d_model 128, the nearest our blocks come to its T5) for a GPU.
    "tiger": ("tiger", TIGER_CPU, RECIPE | {"lr": 3e-3}),
    "tiger-full": ("tiger", TIGER_CPU | {"d_model": 128, "n_heads": 4, "n_layers": 4, "n_decoder_layers": 4},
                   RECIPE | {"lr": 3e-3, "batch_size": 256}),
}

# The README's published full-ranking numbers (../shared/data/README.md), by (dataset, model).
SOURCE = "eSASRec paper (RecSys'25) table"
TIGER_SOURCE = "TIGER paper (Rajput et al., NeurIPS 2023), sequential recommendation table: TIGER"
PUBLISHED: dict[tuple[str, str], tuple[float, float, str]] = {
    ("Beauty", "sasrec"): (0.0921, 0.0531, f"{SOURCE}: SASRec + sampled softmax (re-run)"),
    ("Beauty", "sasrec-sampled"): (0.0921, 0.0531, f"{SOURCE}: SASRec + sampled softmax (re-run)"),
    ("Beauty", "sasrec-bce"): (0.0605, 0.0318, f"{SOURCE}: SASRec, original BCE setup"),
    ("Beauty", "hstu"): (0.0788, 0.0439, f"{SOURCE}: HSTU (re-run)"),
    ("Sports_and_Outdoors", "sasrec"): (0.0569, 0.0314, f"{SOURCE}: SASRec + sampled softmax (re-run)"),
    ("Sports_and_Outdoors", "sasrec-sampled"): (0.0569, 0.0314, f"{SOURCE}: SASRec + sampled softmax (re-run)"),
    ("Sports_and_Outdoors", "hstu"): (0.0437, 0.0243, f"{SOURCE}: HSTU (re-run)"),
    # TIGER's own table: Recall@10 (= HR@10 with one target per user) and NDCG@10.
    ("Beauty", "tiger"): (0.0648, 0.0384, TIGER_SOURCE),
    ("Beauty", "tiger-full"): (0.0648, 0.0384, TIGER_SOURCE),
    ("Sports_and_Outdoors", "tiger"): (0.0400, 0.0225, TIGER_SOURCE),
    ("Sports_and_Outdoors", "tiger-full"): (0.0400, 0.0225, TIGER_SOURCE),
}

FIGURES = (  # (metric, unit) recorded per model
    ("ndcg_at_10", "ratio"), ("hr_at_10", "ratio"), ("ndcg_at_20", "ratio"), ("hr_at_20", "ratio"),
    ("train_seconds", "s"), ("sequences_per_second", "sequences/s"), ("peak_rss", "MiB"),
    ("best_epoch", "epoch"), ("epochs_run", "epoch"), ("val_ndcg_at_10", "ratio"),
    ("seconds_to_best_epoch", "s"),
)

# RecBole's SASRec (--recbole-python): its figures (sequences/s counts our training windows, a unit
# RecBole has not) and the ratio records of each project SASRec against it: (metric, figure divided).
RECBOLE_MODEL = "recbole-sasrec"
RECBOLE_SCRIPT = Path(__file__).resolve().with_name("recbole_sasrec.py")
RECBOLE_FIGURES = tuple((metric, unit) for metric, unit in FIGURES
                        if metric not in ("sequences_per_second", "seconds_to_best_epoch"))
RECBOLE_RATIOS = (("time_ratio_vs_recbole", "train_seconds"), ("ndcg_at_10_ratio_vs_recbole", "ndcg_at_10"))


def dataset_name(text: str) -> str:
    return DATASETS.get(text.lower(), text)


def model_spec(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from training.models import MODELS as REGISTRY

    if name in MODELS:
        return MODELS[name]
    if name in REGISTRY:
        return name, {}, {}
    raise SystemExit(f"unknown model {name!r}; known: {sorted(set(MODELS) | set(REGISTRY))}")


def variant_label(name: str, overrides: dict[str, Any] | None) -> str:
    """The row a run's figures go to: ``name``, or ``name[key=value,...]`` for a ``--model-config`` variant."""
    if not overrides:
        return name
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in overrides.items()}
    return f"{name}[{','.join(f'{key}={values[key]}' for key in sorted(values))}]"


def base_model(label: str) -> str:
    """The benchmark model of a row: ``sasrec[d_model=128]`` -> ``sasrec``."""
    return label.partition("[")[0]


def published(dataset: str, label: str) -> tuple[float, float, str] | None:
    """The README's (HR@10, NDCG@10, source) for a row's model on ``dataset``, variants included."""
    return PUBLISHED.get((dataset, base_model(label)))


def parse_model_config(pairs: Sequence[str]) -> dict[str, Any]:
    """``["dropout=0.5", "n_heads=2"]`` -> ``{"dropout": 0.5, "n_heads": 2}`` (JSON values, else text)."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--model-config takes key=value, got {pair!r}")
        try:
            config[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            config[key.strip()] = text
    return config


def run_model(name: str, split, *, epochs: int | None, max_minutes: float | None, device: str, seed: int,
              work_dir: Path, progress: bool | None, config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train + evaluate one model; its figures (test metrics of the validation-selected epoch)."""
    from core.settings import Settings
    from training.config import TrainConfig
    from training.train import train_model

    model_name, model_config, train_overrides = model_spec(name)
    model_config = model_config | (config_overrides or {})
    label = variant_label(name, config_overrides)
    tc = TrainConfig().with_overrides(**train_overrides).with_overrides(
        epochs=epochs, device=device, seed=seed, progress=progress,
        max_train_seconds=max_minutes * 60 if max_minutes else None)
    settings = Settings(home=work_dir / "home")
    with common.PeakRssSampler(os.getpid()) as sampler:
        result = train_model(settings, split, model_name, tc, model_config=model_config,
                             checkpoint_path=work_dir / split.dataset / label / "checkpoint.pt")
    return {"model": label, **{k: result.test_metrics[k] for k in ("ndcg_at_10", "hr_at_10", "ndcg_at_20", "hr_at_20")},
            "val_ndcg_at_10": result.val_metrics.get("ndcg_at_10"), "train_seconds": result.train_seconds,
            "sequences_per_second": result.sequences_per_second, "peak_rss": sampler.peak_bytes / common.MIB,
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "seconds_to_best_epoch": seconds_to_best_epoch(result.history, result.best_epoch),
            "stopped_by": result.stopped_by, "device": result.device, "train_config": dataclasses.asdict(tc),
            "model_config": model_config}


def merged_seed_summaries(incoming: Sequence[dict[str, Any]], merged: Sequence[dict[str, Any]],
                          command: str) -> list[dict[str, Any]]:
    """The seed-mean records of every (dataset, model) that ``incoming`` brought seed rows of,
    over all its seed rows in ``merged``; hardware and date of the newest seed row."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in incoming):
        rows = common.by_key(merged, "dataset", "model")
        fresh = [rows[dataset, model] | {"model": model}
                 for model in dict.fromkeys(r["model"] for r in incoming if r["dataset"] == dataset)]
        newest = max((r for r in merged if r["dataset"] == dataset and split_seed_label(r["model"])[1] is not None),
                     key=lambda r: r["date"], default=None)
        for row in seed_summaries(fresh, merged, dataset) if newest else []:
            pub = published(dataset.removeprefix("amazon-"), row["model"])
            for metric, unit in FIGURES + SEED_FIGURES:
                if row.get(metric) is not None:
                    out.append(common.record(metric, row[metric], unit, dataset=dataset, model=row["model"],
                                             baseline=pub[2] if pub else None, command=command,
                                             hardware=newest["hardware"], date=newest["date"])
                               | ({"value": round(float(row[metric]), 5)} if unit == "ratio" else {}))
    return out


def seconds_to_best_epoch(history: Sequence[dict[str, Any]], best_epoch: int) -> float | None:
    """Training wall time (validations included) until the end of the epoch that was kept."""
    return next((row.get("seconds") for row in history if row.get("epoch") == best_epoch), None)


def recbole_problem(python: Path) -> str | None:
    """Why ``python`` cannot run the RecBole reference (``None`` when it can)."""
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        return f"no executable interpreter at {python}"
    try:
        done = subprocess.run([str(python), "-c", "import recbole"], capture_output=True, text=True, timeout=300,
                              env=_recbole_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} did not start: {exc}"
    last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
    return f"{python} cannot import recbole: {last}" if done.returncode else None


def _recbole_env() -> dict[str, str]:  # the throwaway interpreter sees its own packages only
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def recbole_command(python: Path, data_file: Path, *, work_dir: Path, out: Path, epochs: int,
                    max_minutes: float | None, device: str, threads: int | None, seed: int) -> list[str]:
    """The command line that runs :mod:`benchmarks.recbole_sasrec` under ``python``."""
    device = "cuda" if device.startswith("cuda") else device if device == "cpu" else "auto"
    command = [str(python), str(RECBOLE_SCRIPT), "--file", str(Path(data_file).resolve()), "--work-dir",
               str(work_dir), "--out", str(out), "--epochs", str(epochs), "--device", device, "--seed", str(seed)]
    return (command + (["--max-minutes", str(max_minutes)] if max_minutes else [])
            + (["--threads", str(threads)] if threads else []))


def run_recbole(python: Path, data_file: Path, *, epochs: int | None, max_minutes: float | None, device: str,
                threads: int | None, seed: int, work_dir: Path) -> dict[str, Any] | None:
    """RecBole's SASRec on ``data_file``: its figures, or ``None`` (with a message) when it cannot run."""
    problem = recbole_problem(python)
    if problem:
        print(f"RecBole reference skipped: {problem}", flush=True)
        return None
    folder = Path(work_dir).resolve() / RECBOLE_MODEL
    folder.mkdir(parents=True, exist_ok=True)
    out, log = folder / "result.json", folder / "recbole.log"
    out.unlink(missing_ok=True)
    command = recbole_command(python, data_file, work_dir=folder, out=out, max_minutes=max_minutes, device=device,
                              epochs=epochs or MODELS["sasrec"][2]["epochs"], threads=threads, seed=seed)
    print(f"{RECBOLE_MODEL}: running {' '.join(command)} (log: {log})", flush=True)
    try:
        measured = common.run_measured(command, env=_recbole_env(), cwd=folder, log_path=log)
        if measured.returncode != 0 or not out.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.exists() else []
            print(f"RecBole reference failed (exit {measured.returncode}); nothing recorded for {RECBOLE_MODEL}. "
                  f"Last lines of {log}:", *(f"    {line}" for line in tail), sep="\n", flush=True)
            return None
        result = json.loads(out.read_text(encoding="utf-8"))
        result.update(model=RECBOLE_MODEL, peak_rss=measured.peak_rss_bytes / common.MIB, wall_seconds=measured.wall_s)
    except (OSError, ValueError, AttributeError) as exc:
        print(f"RecBole reference failed ({exc}); nothing recorded for {RECBOLE_MODEL}", flush=True)
        return None
    return {metric: None for metric, _ in RECBOLE_FIGURES} | result


def recbole_ratios(outcomes: Sequence[dict[str, Any]], recbole: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """``(model, metric, value)`` for each project SASRec variant of ``outcomes`` against RecBole's."""
    out = []
    for result in outcomes:
        name = base_model(result["model"])
        if MODELS.get(name, (name,))[0] != "sasrec":
            continue
        for metric, figure in RECBOLE_RATIOS:
            ours, theirs = result.get(figure), recbole.get(figure)
            value = float(ours) / float(theirs) if ours is not None and theirs else None
            out.append((result["model"], metric, value))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dataset", default="Beauty", help="Beauty or Sports_and_Outdoors (or Sports)")
    parser.add_argument("--models", default="sasrec,popularity", help="comma-separated")
    parser.add_argument("--epochs", type=int, help="upper bound of epochs (default: per model)")
    parser.add_argument("--max-minutes", type=float, help="training time cap per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", help="comma-separated seeds: one row per seed (model[seed=N]); the model's "
                                        "row then holds the mean over every seed row in --results (runs of "
                                        "other seeds included), with the spread in *_seed_min/max")
    parser.add_argument("--file", type=Path, help="read this file instead of the shared data set")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="GPU runs: amazon_loo_gpu.json")
    parser.add_argument("--no-docs", action="store_true", help="ignored (docs: benchmarks.report_docs)")
    parser.add_argument("--merge", type=Path, action="append", default=[], metavar="RESULTS",
                        help="train nothing: merge this results file into --results (repeatable, later wins)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--progress", action="store_true", help="progress bar even without a terminal")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model config field (repeatable); recorded as model[key=value,...]")
    parser.add_argument("--recbole-python", type=Path, default=None, metavar="PATH",
                        help="python of an environment with RecBole: also run RecBole's SASRec")
    args = parser.parse_args(argv)
    if args.merge:  # runs made elsewhere (the GPU machine, one process per seed) whose results came back
        incoming = [r for path in args.merge for r in common.read_results(path)]
        merged = common.update_results(args.results, incoming, key=("dataset", "model"))
        summaries = merged_seed_summaries(incoming, merged, common.command_line(MODULE, argv))
        merged = common.update_results(args.results, summaries, key=("dataset", "model"))
        print(f"{args.results}: {len(merged)} records after merging {len(args.merge)} file(s)"
              f"{f', {len(summaries)} seed-mean records' if summaries else ''}")
        return 0
    import torch

    from training.devices import resolve_device

    # The loop's per-epoch lines and the hybrid's calibration go to the output as the run goes.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    from training.loo import attributes_file, load_loo_split

    if args.threads:
        torch.set_num_threads(args.threads)
    config_overrides = parse_model_config(args.model_config)
    dataset = dataset_name(args.dataset)
    path = args.file or DATA_DIR / f"{dataset}.txt"
    if not path.exists():
        raise SystemExit(f"no data file at {path} (the public data sets live in ../shared/data)")
    attributes = attributes_file(path)
    split = load_loo_split(path, max_len=MAX_LEN, attributes=attributes if attributes.exists() else None)
    split.dataset = dataset
    work_dir = args.work_dir or common.default_work_dir(NAME)
    command = common.command_line(MODULE, argv)
    hardware = common.hardware(packages=("torch",))
    if (device := resolve_device(args.device)).type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    print(f"{dataset}: {split.info()}", flush=True)

    outcomes, progress = [], False if args.no_progress else (True if args.progress else None)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        runs = []
        for seed in seeds:
            started = time.monotonic()
            out = run_model(name, split, epochs=args.epochs, max_minutes=args.max_minutes, device=args.device,
                            seed=seed, work_dir=work_dir / f"seed{seed}", progress=progress,
                            config_overrides=config_overrides)
            if args.seeds:
                out["model"] = seed_label(out["model"], seed)
            print(f"{out['model']}: test NDCG@10 {out['ndcg_at_10']:.4f} HR@10 {out['hr_at_10']:.4f} "
                  f"(best epoch {out['best_epoch']}/{out['epochs_run']}, {out['stopped_by'] or 'no training'}, "
                  f"{time.monotonic() - started:.0f} s)", flush=True)
            runs.append(out)
        outcomes += runs
    recbole = None
    if args.recbole_python:
        recbole = run_recbole(args.recbole_python, path, epochs=args.epochs, max_minutes=args.max_minutes,
                              device=args.device, threads=args.threads, seed=args.seed, work_dir=work_dir / dataset)
        if recbole is not None:
            print(f"{RECBOLE_MODEL}: test NDCG@10 {recbole['ndcg_at_10']} HR@10 {recbole['hr_at_10']} (best epoch "
                  f"{recbole['best_epoch']}/{recbole['epochs_run']}, RecBole {recbole.get('recbole_version')})")

    when, records = common.now_iso(), []

    def add(metric, value, unit, model, baseline, hw=hardware, exact=lambda v: round(float(v), 5)):
        item = common.record(metric, value, unit, dataset=f"amazon-{dataset}", model=model, baseline=baseline,
                             command=command, hardware=hw, date=when)
        if unit == "ratio" and value is not None:
            item["value"] = exact(value)  # record() keeps 3 decimals: too coarse here
        records.append(item)

    if args.seeds:  # the mean row over every seed measured so far, this run's and earlier ones'
        outcomes += seed_summaries(outcomes, common.read_results(args.results), f"amazon-{dataset}")
    for out in outcomes:
        pub = published(dataset, out["model"])
        for metric, unit in FIGURES + SEED_FIGURES:
            if metric in out:
                add(metric, out[metric], unit, out["model"], pub[2] if pub else None)
    if recbole is not None:
        hw = {**hardware, "torch": recbole.get("torch_version"), "recbole": recbole.get("recbole_version")}
        for metric, unit in RECBOLE_FIGURES:
            add(metric, recbole[metric], unit, RECBOLE_MODEL, None, hw)
        # From the figures as recorded, so that dividing the recorded figures gives the recorded ratio.
        recorded = common.by_key(records, "dataset", "model")
        ratios = recbole_ratios([{"model": o["model"], **recorded[f"amazon-{dataset}", o["model"]]} for o in outcomes],
                                recorded[f"amazon-{dataset}", RECBOLE_MODEL])
        for model, metric, value in ratios:  # significant digits: a time ratio can be a few thousandths
            add(metric, value, "ratio", model, RECBOLE_MODEL, exact=lambda v: float(f"{v:.6g}"))
    return common.finish(NAME, args.results, records, key=("dataset", "model"))


if __name__ == "__main__":
    raise SystemExit(main())
