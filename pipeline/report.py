"""The nightly report: one static HTML page per run date, ``$RECSYS_HOME/reports/<date>/index.html``.

Written by the nightly DAG's last task (it runs whether the night succeeded or not) from what the
stages left on disk and in MLflow, so it can also be rebuilt for any past date:

    python -m pipeline.report --date 2026-11-20

Sections: data volumes and quarantine share per arrival day (reconciliation records), the
quality gate's results with a link to the Great Expectations Data Docs, the dbt docs, the
distributions of the data trained on (``pipeline.report_distributions``), the candidate's
training curves (MLflow metric history), the metrics table of candidate, re-scored champion,
popularity baseline and auto-tried models (``pipeline.report_metrics``), candidate vs champion vs
popularity over time (promotion decisions), the night's decision with its checks, sample
recommendations of the champion for a few users next to their recent items, each with its
training-popularity rank, and the DAG run's task states and alerts.
This module collects the data (``report.json`` beside the page keeps it); ``pipeline.report_page``
renders it through Jinja2 templates and ``pipeline.report_charts`` draws its charts with
matplotlib, inlined as static SVG: the page has no script and fetches nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from core.settings import Settings
from pipeline.report_distributions import distributions
from pipeline.report_metrics import metrics_table
from pipeline.report_page import render
from registry.promotion import METRIC

log = logging.getLogger(__name__)

# The DAG task that writes this report: its state is unknown while it runs, so the page lists it
# as "this report" rather than as the "running" Airflow reports.
REPORT_TASK = "write_nightly_report"


def report_dir(settings: Settings, run_date: date) -> Path:
    return settings.home / "reports" / run_date.isoformat()


def _read_json_dir(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
    return records


def reconciliation_rows(settings: Settings, up_to: date) -> list[dict[str, Any]]:
    rows = []
    for rec in _read_json_dir(settings.reconciliation_dir):
        day = str(rec.get("arrival_date", ""))
        if not day or day > up_to.isoformat():
            continue
        total = int(rec.get("input_rows") or 0)
        quarantined = int(rec.get("quarantined_rows") or 0)
        rows.append({
            "arrival_date": day,
            "input_rows": total,
            "written_rows": int(rec.get("written_rows") or 0),
            "quarantined_rows": quarantined,
            "duplicate_rows": int(rec.get("duplicate_rows") or 0),
            "quarantine_share": quarantined / total if total else 0.0,
            "quarantine_reasons": rec.get("quarantine_reasons") or {},
        })
    return sorted(rows, key=lambda r: r["arrival_date"])


def quality_verdicts(settings: Settings, up_to: date) -> list[dict[str, Any]]:
    return sorted(
        (v for v in _read_json_dir(settings.quality_dir) if str(v.get("run_date", "")) <= up_to.isoformat()),
        key=lambda v: v["run_date"],
    )


def decisions(settings: Settings, up_to: date) -> list[dict[str, Any]]:
    return sorted(
        (d for d in _read_json_dir(settings.decisions_dir) if str(d.get("run_date", "")) <= up_to.isoformat()),
        key=lambda d: d["run_date"],
    )


def training_curves(settings: Settings, run_date: date) -> dict[str, Any] | None:
    """The night's candidate run in MLflow: per-epoch train_loss and validation NDCG@10."""
    try:
        from mlflow.exceptions import MlflowException

        from training.tracking import EXPERIMENT_NAME, mlflow_client

        client = mlflow_client(settings)
        experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.run_date = '{run_date.isoformat()}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        run = runs[0]
        curves = {}
        for key, label in (("train_loss", "train_loss"), (f"epoch_val_{METRIC}", f"val {METRIC}")):
            try:
                history = client.get_metric_history(run.info.run_id, key)
            except MlflowException:
                history = []
            curves[label] = [(int(m.step), float(m.value)) for m in sorted(history, key=lambda m: m.step)]
        return {
            "run_id": run.info.run_id,
            "run_date": run_date.isoformat(),
            "run_name": run.info.run_name,
            "model_name": run.data.tags.get("model_name"),
            "curves": curves,
            "metrics": {k: v for k, v in run.data.metrics.items() if not k.startswith("epoch_")},
        }
    except Exception as exc:  # noqa: BLE001 - a report section, never the report's failure
        log.warning("no training curves for %s: %s", run_date, exc)
        return None


def sample_recommendations(settings: Settings, run_date: date, n_users: int = 5, k: int = 10) -> list[dict]:
    """The champion's top-k for the ``n_users`` most active users (offline last-K items), each
    recommended item with its rank in the champion's training-popularity list (None beyond it)."""
    if not settings.warehouse_path.exists() or settings.dbt_target != "duckdb":
        return []
    try:
        import duckdb

        from registry.versions import load_champion

        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            rows = con.execute(
                "select user_id, arg_max(recent_item_ids, event_timestamp) as items from user_features "
                "where feature_date <= ? group by user_id order by len(items) desc, user_id limit ?",
                [run_date, n_users],
            ).fetchall()
        champion = load_champion(settings)
        if champion is None:
            return [{"user_id": u, "recent": list(items or []), "recommended": [], "model_version": None}
                    for u, items in rows]
        model, version = champion
        rank = {item: i for i, item in enumerate(model.popular_item_ids, start=1)}
        return [
            {
                "user_id": user_id,
                "recent": list(items or [])[-10:],
                "recommended": [{"item_id": item, "popularity_rank": rank.get(item)}
                                for item, _ in model.recommend(list(items or []), k=k)],
                "model_version": str(version),
                "n_popular": len(model.popular_item_ids),
            }
            for user_id, items in rows
        ]
    except Exception as exc:  # noqa: BLE001
        log.warning("no sample recommendations for %s: %s", run_date, exc)
        return []


def collect(settings: Settings, run_date: date, *, run_id: str | None = None,
            task_states: dict[str, str] | None = None, dbt_docs: Path | None = None) -> dict[str, Any]:
    from pipeline.alerts import load_alerts

    verdicts = quality_verdicts(settings, run_date)
    history = decisions(settings, run_date)
    decision = next((d for d in history if d["run_date"] == run_date.isoformat()), None)
    training = training_curves(settings, run_date)
    dbt_index = (dbt_docs or settings.home / "dbt_docs") / "index.html"
    return {
        "run_date": run_date.isoformat(),
        "run_id": run_id,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task_states": {task: state for task, state in (task_states or {}).items() if task != REPORT_TASK},
        "report_task": REPORT_TASK if task_states else None,
        "volumes": reconciliation_rows(settings, run_date),
        "verdict": next((v for v in verdicts if v["run_date"] == run_date.isoformat()), None),
        "verdicts": verdicts,
        "dbt_docs_index": str(dbt_index) if dbt_index.exists() else None,
        "distributions": distributions(settings, run_date),
        "training": training,
        "metrics_table": metrics_table(settings, decision, training),
        "decisions": history,
        "decision": decision,
        "samples": sample_recommendations(settings, run_date),
        "alerts": [a for a in load_alerts(settings) if a.get("date") == run_date.isoformat()],
    }


def write_report(settings: Settings, run_date: date, *, run_id: str | None = None,
                 task_states: dict[str, str] | None = None, dbt_docs: Path | None = None) -> dict[str, Any]:
    data = collect(settings, run_date, run_id=run_id, task_states=task_states, dbt_docs=dbt_docs)
    out = report_dir(settings, run_date)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}"
    tmp.write_text(render(data, metric=METRIC), encoding="utf-8")
    tmp.replace(path)  # readers never see a half-written page
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    return {
        "report_path": str(path),
        "report_url": path.resolve().as_uri(),
        "gate_passed": None if data["verdict"] is None else data["verdict"]["passed"],
        "promoted": None if data["decision"] is None else data["decision"].get("promote"),
        "alerts": len(data["alerts"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the nightly HTML report of one run date.")
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    args = parser.parse_args(argv)
    print(json.dumps(write_report(Settings.from_env(), args.date)))


if __name__ == "__main__":
    main()
