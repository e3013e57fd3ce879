"""The nightly report: one static HTML page per run date, ``$RECSYS_HOME/reports/<date>/index.html``.

Written by the nightly DAG's last task (it runs whether the night succeeded or not) from what the
stages left on disk and in MLflow, so it can also be rebuilt for any past date:

    python -m pipeline.report --date 2026-11-20

Sections: data volumes and quarantine share per arrival day (reconciliation records), the
quality gate's results with a link to the Great Expectations Data Docs, the dbt docs, the
candidate's training curves (MLflow metric history), candidate vs champion vs popularity over
time (promotion decisions), the night's decision with its reasons, sample recommendations of the
champion for a few users next to their recent items, and the DAG run's task states and alerts.
Charts are inline SVG: the page has no dependency and no network access.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from core.settings import Settings

log = logging.getLogger(__name__)

METRIC = "ndcg_at_10"
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def report_dir(settings: Settings, run_date: date) -> Path:
    return settings.home / "reports" / run_date.isoformat()


# ---------------------------------------------------------------- data collection
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
            "run_name": run.info.run_name,
            "model_name": run.data.tags.get("model_name"),
            "curves": curves,
            "metrics": {k: v for k, v in run.data.metrics.items() if not k.startswith("epoch_")},
        }
    except Exception as exc:  # noqa: BLE001 - a report section, never the report's failure
        log.warning("no training curves for %s: %s", run_date, exc)
        return None


def sample_recommendations(settings: Settings, run_date: date, n_users: int = 5, k: int = 10) -> list[dict]:
    """The champion's top-k for the ``n_users`` most active users (offline last-K items)."""
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
        return [
            {
                "user_id": user_id,
                "recent": list(items or [])[-10:],
                "recommended": [item for item, _ in model.recommend(list(items or []), k=k)],
                "model_version": str(version),
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
    dbt_index = (dbt_docs or settings.home / "dbt_docs") / "index.html"
    return {
        "run_date": run_date.isoformat(),
        "run_id": run_id,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task_states": task_states or {},
        "volumes": reconciliation_rows(settings, run_date),
        "verdict": next((v for v in verdicts if v["run_date"] == run_date.isoformat()), None),
        "verdicts": verdicts,
        "dbt_docs_index": str(dbt_index) if dbt_index.exists() else None,
        "training": training_curves(settings, run_date),
        "decisions": history,
        "decision": next((d for d in history if d["run_date"] == run_date.isoformat()), None),
        "samples": sample_recommendations(settings, run_date),
        "alerts": [a for a in load_alerts(settings) if a.get("date") == run_date.isoformat()],
    }


# ---------------------------------------------------------------- rendering
def svg_line_chart(series: dict[str, Sequence[tuple[Any, float | None]]], *, title: str,
                   width: int = 560, height: int = 240, x_labels: Sequence[str] | None = None) -> str:
    """A small line chart as inline SVG. ``series``: name -> [(x index or label, y)], y may be None."""
    pad_l, pad_r, pad_t, pad_b = 52, 12, 28, 36
    points = [(x, y) for s in series.values() for x, y in s if y is not None]
    esc = html.escape
    if not points:
        return f'<p class="muted">{esc(title)}: no data.</p>'
    xs = list(x_labels) if x_labels is not None else sorted({x for x, _ in points})
    index = {x: i for i, x in enumerate(xs)}
    ys = [y for _, y in points]
    y_min, y_max = min(ys), max(ys)
    if y_max == y_min:
        y_min, y_max = y_min - 0.5, y_max + 0.5
    span_x = max(len(xs) - 1, 1)

    def px(x):
        return pad_l + (width - pad_l - pad_r) * index[x] / span_x

    def py(y):
        return pad_t + (height - pad_t - pad_b) * (1 - (y - y_min) / (y_max - y_min))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
             f'<text x="{pad_l}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
             f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#999"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#999"/>']
    for frac in (0.0, 0.5, 1.0):
        value = y_min + (y_max - y_min) * frac
        parts.append(f'<text x="{pad_l - 4}" y="{py(value) + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{value:.3g}</text>')
    step = max(1, len(xs) // 8)
    for i, x in enumerate(xs):
        if i % step == 0 or i == len(xs) - 1:
            parts.append(f'<text x="{px(x):.1f}" y="{height - pad_b + 14}" font-size="10" '
                         f'text-anchor="middle">{esc(str(x))}</text>')
    for n, (name, data) in enumerate(series.items()):
        color = SERIES_COLORS[n % len(SERIES_COLORS)]
        pts = [(px(x), py(y)) for x, y in data if y is not None and x in index]
        if len(pts) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in pts]
        parts.append(f'<text x="{pad_l + 8 + 150 * n}" y="{height - 6}" font-size="11" fill="{color}">'
                     f'■ {esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _link(path: str | None, label: str) -> str:
    if not path:
        return f'<span class="muted">{html.escape(label)}: not generated</span>'
    href = path if "://" in path else Path(path).resolve().as_uri()
    return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'


def _metric(metrics: dict | None, key: str = METRIC) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def evaluation_summary(decision: dict[str, Any]) -> str:
    """How the night measured its candidate (protocol, evidence, seen-item rule), in plain words,
    and a plain "not enough evidence" when that is why nothing was promoted."""
    esc = html.escape
    split = decision.get("split") or {}
    if not split:
        return ""
    seen = "excluded from" if split.get("exclude_seen", True) else "kept in"
    text = (f"<p>Evaluated under the <b>{esc(str(split.get('protocol', 'user_temporal')))}</b> protocol "
            f"({esc(str(split.get('protocol_reason', 'not recorded')))}): {split.get('n_val_examples')} validation "
            f"and {split.get('n_test_examples')} test examples; the user's own items are {seen} the rankings "
            f"({esc(str(split.get('exclude_seen_reason', 'not recorded')))}).</p>")
    refused = [c for c in decision.get("checks", [])
               if c["name"] == "enough_evaluation_examples" and not c["passed"]]
    if refused:
        text += f'<p class="warning"><b>Not enough evidence to promote</b>: {esc(str(refused[0]["detail"]))}</p>'
    return text


def render(data: dict[str, Any]) -> str:
    esc = html.escape
    day = data["run_date"]
    verdict, decision, training = data["verdict"], data["decision"], data["training"]
    sections = []

    # Run summary
    states = data["task_states"]
    status_rows = [(esc(t), f'<span class="state {esc(s)}">{esc(s)}</span>') for t, s in states.items()]
    sections.append("<h2>Run</h2>" + f"<p>run_id <code>{esc(str(data['run_id']))}</code>, "
                    f"generated {esc(data['generated_at'])}</p>"
                    + (_table(["task", "state"], status_rows) if status_rows else ""))
    if data["alerts"]:
        sections.append("<h3>Alerts</h3>" + _table(
            ["task", "exception", "at"],
            [(esc(str(a.get("task_id"))), f"<pre>{esc(str(a.get('exception'))[:600])}</pre>",
              esc(str(a.get("alerted_at")))) for a in data["alerts"]]))

    # Data volumes
    vols = data["volumes"]
    rows = [(esc(v["arrival_date"]), v["input_rows"], v["written_rows"], v["quarantined_rows"],
             v["duplicate_rows"], f"{100 * v['quarantine_share']:.2f}%",
             esc(", ".join(f"{k}: {n}" for k, n in sorted(v["quarantine_reasons"].items()))))
            for v in vols]
    chart = svg_line_chart(
        {"written": [(v["arrival_date"], v["written_rows"]) for v in vols],
         "quarantined": [(v["arrival_date"], v["quarantined_rows"]) for v in vols]},
        title="Rows per arrival day")
    sections.append('<h2 id="volumes">Data volumes per arrival day</h2>' + chart + _table(
        ["arrival day", "input", "written", "quarantined", "duplicates", "quarantine share", "reasons"], rows))

    # Quality
    if verdict is None:
        quality = '<p class="muted">No quality verdict for this date (the gate did not run).</p>'
    else:
        passed = verdict["passed"]
        quality = (f'<p>Gate <span class="state {"success" if passed else "failed"}">'
                   f'{"passed" if passed else "FAILED"}</span> — '
                   + _link(verdict.get("data_docs_index"), "Great Expectations Data Docs") + "</p>")
        quality += _table(["suite", "passed"], [(esc(k), "✔" if v else "✘") for k, v in verdict["suites"].items()])
        for label, items in (("Critical failures", verdict.get("failed_critical")),
                             ("Warnings", verdict.get("failed_warnings"))):
            if items:
                quality += f"<h3>{label}</h3><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"
    history_rows = [(esc(v["run_date"]), "passed" if v["passed"] else "failed", len(v.get("failed_critical", [])),
                     len(v.get("failed_warnings", []))) for v in data["verdicts"]]
    quality += "<h3>Gate history</h3>" + _table(["date", "gate", "critical", "warnings"], history_rows)
    sections.append('<h2 id="quality">Data quality</h2>' + quality
                    + "<p>" + _link(data["dbt_docs_index"], "dbt docs (models, lineage, tests)") + "</p>")

    # Training curves
    if training is None:
        sections.append('<h2 id="training">Training</h2><p class="muted">No training run for this date.</p>')
    else:
        curves = training["curves"]
        charts = "".join(svg_line_chart({name: points}, title=f"{name} per epoch", width=420)
                         for name, points in curves.items())
        sections.append(f'<h2 id="training">Training — {esc(str(training["model_name"]))} '
                        f'(MLflow run <code>{esc(training["run_id"])}</code>)</h2>' + charts)

    # Metrics over time
    history = data["decisions"]
    dates = [d["run_date"] for d in history]
    series = {
        "candidate": [(d["run_date"], _metric(d["metrics"].get("candidate"))) for d in history],
        "champion (re-scored)": [(d["run_date"], _metric(d["metrics"].get("champion_rescored"))) for d in history],
        "popularity": [(d["run_date"], _metric(d["metrics"].get("popularity"))) for d in history],
    }
    sections.append(f'<h2 id="metrics">Test {METRIC} over time</h2>'
                    + svg_line_chart(series, title=f"{METRIC}: candidate vs champion vs popularity", x_labels=dates))

    # Decision
    if decision is None:
        text = '<p class="muted">No promotion decision for this date (the run stopped before it).</p>'
    else:
        promoted = decision.get("promote")
        text = (f'<p><span class="state {"success" if promoted else "failed"}">'
                f'{"PROMOTED" if promoted else "not promoted"}</span> candidate v{esc(str(decision.get("candidate_version")))}'
                f' — champion before v{esc(str(decision.get("champion_version_before")))}, after '
                f'v{esc(str(decision.get("champion_version_after")))}. Reasons: {esc(str(decision.get("reasons")))}</p>')
        text += evaluation_summary(decision)
        text += _table(["check", "passed", "detail"],
                       [(esc(c["name"]), "✔" if c["passed"] else "✘", esc(str(c["detail"]))) for c in decision["checks"]])
    sections.append('<h2 id="decision">Promotion decision</h2>' + text)

    # Samples
    samples = data["samples"]
    if samples:
        rows = [(esc(s["user_id"]), esc(" ".join(s["recent"])), esc(" ".join(s["recommended"])) or "—")
                for s in samples]
        version = samples[0].get("model_version")
        sections.append(f'<h2 id="samples">Sample recommendations (champion v{esc(str(version))})</h2>'
                        + _table(["user", "recent items (oldest → newest)", "recommended"], rows))
    else:
        sections.append('<h2 id="samples">Sample recommendations</h2><p class="muted">No champion or no users.</p>')

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nightly recsys report {esc(day)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} .muted {{ color: #888; }} pre {{ margin: 0; white-space: pre-wrap; }}
.warning {{ background: #fff3cd; padding: 4px 8px; }}
.state {{ padding: 1px 6px; border-radius: 3px; background: #eee; }}
.state.success {{ background: #c8efc8; }} .state.failed, .state.upstream_failed {{ background: #f6c6c6; }}
</style></head><body>
<h1>Nightly recommender report — {esc(day)}</h1>
{''.join(f'<section>{s}</section>' for s in sections)}
</body></html>
"""


def write_report(settings: Settings, run_date: date, *, run_id: str | None = None,
                 task_states: dict[str, str] | None = None, dbt_docs: Path | None = None) -> dict[str, Any]:
    data = collect(settings, run_date, run_id=run_id, task_states=task_states, dbt_docs=dbt_docs)
    out = report_dir(settings, run_date)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}"
    tmp.write_text(render(data), encoding="utf-8")
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
