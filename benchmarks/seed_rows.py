"""Several seeds of one benchmark model: per-seed row labels and the mean row with its spread.

A run with ``--seeds`` records each seed as ``model[seed=N]`` (``sasrec[d_model=128,seed=N]`` for a
variant); the model's own row is the mean over every seed row recorded for the data set, so seeds
run in separate processes (or machines) pool into one row once their results are merged.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from benchmarks import common

SPREAD = ("ndcg_at_10", "hr_at_10")  # figures whose seed-to-seed range the summary row records


def seed_label(label: str, seed: int) -> str:
    """``hybrid`` -> ``hybrid[seed=43]``; ``sasrec[d_model=128]`` -> ``sasrec[d_model=128,seed=43]``."""
    return f"{label[:-1]},seed={seed}]" if label.endswith("]") else f"{label}[seed={seed}]"


def split_seed_label(label: str) -> tuple[str, int | None]:
    """``hybrid[seed=43]`` -> ``("hybrid", 43)``; ``sasrec[d_model=128,seed=43]`` ->
    ``("sasrec[d_model=128]", 43)``; a label without a seed -> ``(label, None)``."""
    match = re.fullmatch(r"(.*?)([\[,])seed=(\d+)\]", label)
    if not match:
        return label, None
    base, sep, seed = match.groups()
    return (f"{base}]" if sep == "," else base), int(seed)


def seed_summaries(outcomes: Sequence[dict[str, Any]], earlier: Sequence[dict[str, Any]],
                   dataset: str) -> list[dict[str, Any]]:
    """For each model of ``outcomes`` run per seed, its mean row over its seed rows: this run's
    and those of ``earlier`` records (of ``dataset``) that this run did not replace."""
    fresh = {o["model"]: o for o in outcomes}
    labels = list(dict.fromkeys(split_seed_label(m)[0] for m in fresh if split_seed_label(m)[1] is not None))
    recorded = {model: row | {"model": model} for (ds, model), row in common.by_key(earlier, "dataset", "model").items()
                if ds == dataset}
    out = []
    for label in labels:
        runs = {m: row for m, row in (recorded | fresh).items()
                if split_seed_label(m)[0] == label and split_seed_label(m)[1] is not None}
        out.append(seed_summary(list(runs.values()), label))
    return out


def seed_summary(runs: Sequence[dict[str, Any]], label: str) -> dict[str, Any]:
    """The row of a model run with several seeds: the mean of every numeric figure, plus each
    SPREAD figure's min and max and the number of seeds."""
    out: dict[str, Any] = {"model": label, "n_seeds": len(runs)}
    for metric in dict.fromkeys(k for r in runs for k, v in r.items() if isinstance(v, (int, float))
                                and not isinstance(v, bool)):
        values = [float(r[metric]) for r in runs if isinstance(r.get(metric), (int, float))]
        out[metric] = sum(values) / len(values)
    for metric in SPREAD:
        values = [float(r[metric]) for r in runs]
        out[f"{metric}_seed_min"], out[f"{metric}_seed_max"] = min(values), max(values)
    return out


SEED_FIGURES = (("n_seeds", "seeds"),) + tuple(
    (f"{metric}_seed_{end}", "ratio") for metric in ("ndcg_at_10", "hr_at_10") for end in ("min", "max"))
