"""The nightly report's metrics table: the candidate, the champion re-scored on the same test
window, the popularity baseline and, for ``model=auto``, every model tried, side by side.

Everything comes from what the night already recorded, nothing is re-scored here:

* the promotion decision (``settings.decisions_dir/<date>.json``): the candidate's and the
  popularity baseline's test metrics and the champion's, re-scored on the candidate's test window;
* the candidate's MLflow run (``pipeline.report.training_curves``): the same test metrics when
  the night stopped before its decision, the candidate's popularity bias (a diagnostic kept out
  of the decision's ranking metrics) and, for ``model=auto``, each model's validation score;
* the run's checkpoints under ``settings.models_dir/<date>/<run id>/``: the baseline's popularity
  bias and each auto model's full validation metrics, when they are still on disk.

A figure nobody recorded (the champion's popularity bias, say) is ``None``, shown as a dash.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

# (metric key as training.evaluate names it, column heading)
COLUMNS = (
    ("hr_at_10", "HR@10"), ("ndcg_at_10", "NDCG@10"), ("mrr_at_10", "MRR@10"),
    ("hr_at_20", "HR@20"), ("ndcg_at_20", "NDCG@20"), ("mrr_at_20", "MRR@20"),
    ("coverage_at_10", "coverage@10"), ("popularity_bias_at_10", "popularity bias@10"),
)
_AUTO_KEY = re.compile(r"^auto_(?P<model>.+?)_val_(?P<metric>.+)$")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _values(*sources: dict[str, Any] | None) -> dict[str, float | None]:
    """One value per column; a later source fills only what the earlier ones lack."""
    out: dict[str, float | None] = {key: None for key, _ in COLUMNS}
    for source in sources:
        for key in out:
            if out[key] is None:
                out[key] = _number((source or {}).get(key))
    return out


def _unprefixed(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def _checkpoint_metrics(path: Path) -> dict[str, Any]:
    """The ``metrics`` a training checkpoint recorded ({val, test, test_extra}), or {}."""
    if not path.is_file():
        return {}
    try:
        import torch

        # weights_only: tensors and plain containers, never arbitrary code.
        return dict(torch.load(path, map_location="cpu", weights_only=True).get("metrics") or {})
    except Exception as exc:  # noqa: BLE001 - a missing figure, not a failed report
        log.warning("cannot read the metrics of %s: %s", path, exc)
        return {}


def _delta(candidate: dict[str, float | None], other: dict[str, float | None]) -> dict[str, dict | None]:
    out: dict[str, dict | None] = {}
    for key, _ in COLUMNS:
        a, b = candidate.get(key), other.get(key)
        out[key] = None if a is None or b is None else {
            "abs": a - b, "rel": (a - b) / b if b else None}
    return out


def _auto_rows(run_metrics: dict[str, Any], run_dir: Path | None, selected: str) -> list[dict[str, Any]]:
    """One validation row per model ``model=auto`` trained, best validation score first."""
    scores: dict[str, dict[str, Any]] = {}
    for key, value in run_metrics.items():
        match = _AUTO_KEY.match(key)
        if match:
            scores.setdefault(match["model"], {})[match["metric"]] = value
    rows = []
    for model, recorded in scores.items():
        saved = _checkpoint_metrics(run_dir / "candidates" / model / "checkpoint.pt") if run_dir else {}
        own = _unprefixed(run_metrics, "val_") if model == selected else {}
        rows.append({
            "label": model, "window": "validation", "selected": model == selected,
            "note": "selected" if model == selected else "tried by model=auto",
            "values": _values(own, saved.get("val"), recorded),
        })
    key = next(iter(next(iter(scores.values()), {})), "ndcg_at_10")
    return sorted(rows, key=lambda r: (-(r["values"].get(key) or -math.inf), r["label"]))


def metrics_table(settings: Settings, decision: dict[str, Any] | None,
                  training: dict[str, Any] | None) -> dict[str, Any] | None:
    """The table's rows (label, window, note, values by column key) and the candidate's deltas
    against the champion and the popularity baseline; None when the night trained nothing."""
    recorded = (decision or {}).get("metrics") or {}
    run_id = (training or {}).get("run_id")
    # The MLflow run found by date is the decided candidate's unless the night was re-run
    # after its decision; then only the decision's own figures are used.
    same_run = decision is None or decision.get("candidate_run_id") in (None, run_id)
    run_metrics = dict((training or {}).get("metrics") or {}) if same_run else {}
    if not recorded.get("candidate") and not run_metrics:
        return None
    run_date = (decision or {}).get("run_date") or (training or {}).get("run_date")
    # Where the night's checkpoints were written (training.tracking.train_and_log).
    saved_run = (decision or {}).get("candidate_run_id") or run_id
    run_dir = settings.models_dir / str(run_date) / str(saved_run) if saved_run and run_date else None
    model = (decision or {}).get("candidate_model_name") or (training or {}).get("model_name") or "candidate"

    candidate = _values(recorded.get("candidate"), run_metrics)
    baseline_saved = _checkpoint_metrics(run_dir / "popularity" / "checkpoint.pt") if run_dir else {}
    popularity = _values(recorded.get("popularity"), _unprefixed(run_metrics, "popularity_"),
                         baseline_saved.get("test"), baseline_saved.get("test_extra"))
    rows = [{"label": f"candidate ({model})", "window": "test", "note": f"v{decision['candidate_version']}"
             if decision and decision.get("candidate_version") else "", "values": candidate}]
    champion = recorded.get("champion_rescored")
    champion_values = _values(champion) if champion else None
    if champion_values is not None:
        rows.append({"label": "champion (re-scored)", "window": "test",
                     "note": f"v{decision.get('champion_version')}, on the candidate's test window",
                     "values": champion_values})
    rows.append({"label": "popularity baseline", "window": "test", "note": "most popular in training",
                 "values": popularity})
    auto = _auto_rows(run_metrics, run_dir, model)
    rows.extend(auto)
    deltas = [{"label": "candidate − champion", "values": _delta(candidate, champion_values)}
              if champion_values is not None else None,
              {"label": "candidate − popularity", "values": _delta(candidate, popularity)}]
    candidate_recorded = recorded.get("candidate") or run_metrics
    return {
        "columns": [{"key": key, "label": label} for key, label in COLUMNS],
        "rows": rows,
        "deltas": [d for d in deltas if d is not None],
        "n_test_examples": _number(candidate_recorded.get("n_examples") or run_metrics.get("n_test_examples")),
        "champion": None if champion_values is not None else (
            "no champion to compare with" if decision and not decision.get("champion_version")
            else "the champion was not re-scored (no decision, or another test window)"),
        "auto": bool(auto),
    }
