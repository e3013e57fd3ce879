"""The report's metrics table: candidate, re-scored champion, popularity baseline and the models
``model=auto`` tried, from the decision, the MLflow run's metrics and the run's checkpoints; the
candidate's deltas; a dash for what nobody recorded."""

from __future__ import annotations

import pytest
import torch

from pipeline.report_metrics import COLUMNS, metrics_table
from pipeline.report_page import delta, figure, render
from training.evaluate import CUTOFFS, evaluate

RUN_DATE, RUN_ID = "2026-10-04", "run42"


def _metrics(scale: float) -> dict[str, float]:
    return {"hr_at_10": 0.2 * scale, "ndcg_at_10": 0.1 * scale, "mrr_at_10": 0.08 * scale,
            "hr_at_20": 0.3 * scale, "ndcg_at_20": 0.12 * scale, "mrr_at_20": 0.09 * scale,
            "coverage_at_10": 0.5 * scale, "mrr": 0.09 * scale, "n_examples": 400.0}


def _decision(champion: dict | None) -> dict:
    return {"run_date": RUN_DATE, "candidate_run_id": RUN_ID, "candidate_version": "5",
            "champion_version": "4" if champion else None, "candidate_model_name": "sasrec",
            "metrics": {"candidate": _metrics(1.0), "popularity": _metrics(0.5), "champion_rescored": champion,
                        "metric": "ndcg_at_10"}}


def _run(auto: bool) -> dict:
    metrics = {**_metrics(1.0), "popularity_bias_at_10": 0.7, **{f"val_{k}": v for k, v in _metrics(1.1).items()},
               **{f"popularity_{k}": v for k, v in _metrics(0.5).items()}}
    if auto:
        metrics |= {"auto_sasrec_val_ndcg_at_10": 0.11, "auto_gru4rec_val_ndcg_at_10": 0.09,
                    "auto_item_knn_val_ndcg_at_10": 0.095}
    return {"run_id": RUN_ID, "run_date": RUN_DATE, "model_name": "sasrec", "metrics": metrics}


def _save(path, metrics: dict) -> None:
    path.parent.mkdir(parents=True)
    torch.save({"model_name": "x", "metrics": metrics}, path)


def _row(table: dict, label: str) -> dict:
    return next(r for r in table["rows"] if r["label"] == label)


def test_evaluate_produces_every_column_the_table_shows():
    assert {10, 20} <= set(CUTOFFS)
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.5, 0.3]])  # [1, N + 1]
    out = evaluate(lambda x: scores.expand(x.shape[0], -1), [[1]], [3], 4, item_counts={1: 5, 2: 1})
    assert {key for key, _ in COLUMNS} <= set(out)


def test_the_table_compares_candidate_champion_popularity_and_auto_models(settings):
    run_dir = settings.models_dir / RUN_DATE / RUN_ID
    _save(run_dir / "popularity" / "checkpoint.pt", {"test": _metrics(0.5), "test_extra": {"popularity_bias_at_10": 0.95}})
    _save(run_dir / "candidates" / "gru4rec" / "checkpoint.pt", {"val": _metrics(0.9)})
    table = metrics_table(settings, _decision(_metrics(0.8)), _run(auto=True))

    assert [c["label"] for c in table["columns"]] == ["HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20", "MRR@20",
                                                       "coverage@10", "popularity bias@10"]
    assert [(r["label"], r["window"]) for r in table["rows"]] == [
        ("candidate (sasrec)", "test"), ("champion (re-scored)", "test"), ("popularity baseline", "test"),
        ("sasrec", "validation"), ("item_knn", "validation"), ("gru4rec", "validation")]
    candidate = _row(table, "candidate (sasrec)")["values"]
    assert candidate["ndcg_at_20"] == pytest.approx(0.12) and candidate["popularity_bias_at_10"] == 0.7
    assert _row(table, "champion (re-scored)")["values"]["popularity_bias_at_10"] is None  # not recorded
    assert _row(table, "champion (re-scored)")["note"] == "v4, on the candidate's test window"
    assert _row(table, "popularity baseline")["values"]["popularity_bias_at_10"] == 0.95  # from its checkpoint
    # the selected model's validation metrics from the run, a tried one's from its checkpoint,
    # and where only MLflow's selection score is left, that one figure
    assert _row(table, "sasrec")["selected"] and _row(table, "sasrec")["values"]["hr_at_20"] == pytest.approx(0.33)
    assert _row(table, "gru4rec")["values"]["hr_at_20"] == pytest.approx(0.27)
    knn = _row(table, "item_knn")["values"]
    assert knn["ndcg_at_10"] == 0.095 and knn["hr_at_10"] is None
    # deltas of the candidate, absolute and relative
    vs_champion, vs_popularity = table["deltas"]
    assert vs_champion["label"] == "candidate − champion"
    assert vs_champion["values"]["ndcg_at_10"]["abs"] == pytest.approx(0.02)
    assert vs_champion["values"]["ndcg_at_10"]["rel"] == pytest.approx(0.25)
    assert vs_champion["values"]["popularity_bias_at_10"] is None
    assert vs_popularity["values"]["popularity_bias_at_10"]["abs"] == pytest.approx(-0.25)
    assert table["n_test_examples"] == 400 and table["auto"] and table["champion"] is None


def test_without_a_champion_or_a_decision(settings):
    no_champion = metrics_table(settings, _decision(None), _run(auto=False))
    assert [r["label"] for r in no_champion["rows"]] == ["candidate (sasrec)", "popularity baseline"]
    assert [d["label"] for d in no_champion["deltas"]] == ["candidate − popularity"]
    assert no_champion["champion"] == "no champion to compare with" and not no_champion["auto"]
    # the night stopped before its decision: the run's own test metrics
    undecided = metrics_table(settings, None, _run(auto=False))
    assert _row(undecided, "candidate (sasrec)")["values"]["hr_at_10"] == pytest.approx(0.2)
    assert _row(undecided, "popularity baseline")["values"]["hr_at_10"] == pytest.approx(0.1)
    assert "not re-scored" in undecided["champion"]
    # a run logged after the decision (a re-run) is not mixed into the decided candidate's row
    rerun = metrics_table(settings, _decision(None), _run(auto=True) | {"run_id": "later"})
    assert _row(rerun, "candidate (sasrec)")["values"]["popularity_bias_at_10"] is None and not rerun["auto"]
    assert metrics_table(settings, None, None) is None


def test_the_page_shows_the_table_with_dashes_and_signed_deltas(settings):
    assert figure(None) == "—" and figure(0.123456) == "0.1235"
    assert delta(None) == "—" and delta({"abs": 0.02, "rel": 0.25}) == "+0.0200 (+25.0%)"
    assert delta({"abs": -0.01, "rel": None}) == "-0.0100"
    table = metrics_table(settings, _decision(_metrics(0.8)), _run(auto=True))
    data = {"run_date": RUN_DATE, "run_id": None, "generated_at": "now", "task_states": {}, "report_task": None,
            "alerts": [], "volumes": [], "verdict": None, "verdicts": [], "dbt_docs_index": None,
            "distributions": None, "training": None, "metrics_table": table, "decisions": [], "decision": None,
            "samples": []}
    page = render(data, metric="ndcg_at_10")
    section = page.split('id="comparison"')[1].split("</section>")[0]
    assert "<th>NDCG@20</th>" in section and "<th>popularity bias@10</th>" in section
    assert "<td>candidate − champion</td><td>test</td>" in section and "+0.0200 (+25.0%)" in section
    assert "(400 examples)" in section and "compared on the validation window" in section
    assert '<td class="selected">sasrec</td><td>validation</td>' in section
    assert section.count('<td class="num">—</td>') >= 2
