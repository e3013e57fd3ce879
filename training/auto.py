"""``model=auto``: train every model of ``settings.auto_models`` on the night's split and keep the
one with the best validation metric as the candidate.

Selection uses the validation window only (the test window is scored once per model by the loop,
and only the winner's test figures reach the promotion decision). A model that cannot be trained
on this split (a session log whose training sessions all have one item gives the neural models
nothing to learn) is listed with its error and skipped, not fatal, as long as one model trains.
Ties go to the model listed first, so list the cheaper models first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

AUTO = "auto"


def auto_model_names(setting: str) -> list[str]:
    from training.models import model_classes

    names = [n.strip() for n in setting.split(",") if n.strip()]
    if not names:
        raise ValueError("RECSYS_AUTO_MODELS names no model")
    for name in names:
        model_classes(name)  # raises on an unknown name
    return names


def select_on_validation(
    names: list[str],
    train_one: Callable[[str, Path], Any],
    out_dir: Path,
    metric: str,
) -> tuple[Any, list[dict[str, Any]]]:
    """Train each model with ``train_one(name, checkpoint_path)``; return the best result by
    validation ``metric`` and one row per model (its validation and test figures or its error)."""
    best, best_score = None, float("-inf")
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            result = train_one(name, out_dir / name / "checkpoint.pt")
        except ValueError as exc:  # nothing to learn from this split for this model
            log.warning("auto: %s skipped: %s", name, exc)
            rows.append({"model": name, "status": "skipped", "error": str(exc)})
            continue
        score = float(result.val_metrics.get(metric, float("-inf")))
        rows.append({"model": name, "status": "trained", f"val_{metric}": score,
                     f"test_{metric}": float(result.test_metrics.get(metric, float("nan"))),
                     "train_seconds": round(result.train_seconds, 2)})
        log.info("auto: %s val_%s=%.4f", name, metric, score)
        if best is None or score > best_score:
            best, best_score = result, score
    if best is None:
        raise ValueError("auto: no model could be trained on this split: "
                         + "; ".join(f"{r['model']}: {r['error']}" for r in rows))
    for row in rows:
        row["selected"] = row["model"] == best.model_name
    return best, rows
