"""The nightly report page from recorded stage outputs, without running a night: every section,
escaped text, charts that read well for one night and for many, and a page that fetches nothing."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest

from core.settings import Settings
from pipeline.report import main, write_report
from pipeline.report_metrics import metrics_table
from pipeline.report_charts import svg_line_chart, volume_chart
from pipeline.report_page import render

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]


def _volume(day: str, written: int, quarantined: int) -> dict:
    total = written + quarantined
    return {"arrival_date": day, "input_rows": total, "written_rows": written, "quarantined_rows": quarantined,
            "duplicate_rows": 3, "quarantine_share": quarantined / total,
            "quarantine_reasons": {"unknown_event_type": quarantined - 1, "bad_timestamp": 1}}


def _verdict(day: str, passed: bool) -> dict:
    return {"run_date": day, "passed": passed, "suites": {"events": passed, "sessions": True},
            "failed_critical": [] if passed else ["events: <null> user ids"], "failed_warnings": ["late rows"],
            "data_docs_index": "/tmp/gx/index.html"}


def _decision(day: str, candidate: float, champion: float | None, promote: bool) -> dict:
    return {"run_date": day, "promote": promote, "candidate_version": "4", "champion_version_before": "3",
            "champion_version_after": "4" if promote else "3",
            "reasons": "beats_champion: <b>not</b> significant" if not promote else "all checks passed",
            "candidate_model_name": "sasrec", "candidate_run_id": "abc123",
            "metrics": {"candidate": {"ndcg_at_10": candidate, "hr_at_20": 0.3, "n_examples": 400},
                        "champion_rescored": None if champion is None else {"ndcg_at_10": champion, "hr_at_20": 0.25},
                        "popularity": {"ndcg_at_10": 0.05, "hr_at_20": 0.2}},
            "split": {"protocol": "session", "protocol_reason": "users rarely return", "n_val_examples": 300,
                      "n_test_examples": 400, "exclude_seen": True, "exclude_seen_reason": "few repeats"},
            "checks": [{"name": "beats_champion", "passed": promote, "detail": "p=0.2 & <1"}]}


DISTRIBUTIONS = {
    "window": "everything up to 2026-10-03",
    "session_lengths": [(1, 500), (2, 120), (3, 40), (7, 2)],
    "session_summary": {"n_sessions": 662, "mean": 1.3, "median": 1, "p90": 2, "max": 7},
    "item_tail": {"n_items": 60, "n_events": 1500, "points": [(1, 400), (2, 200), (10, 30), (60, 1)],
                  "top_shares": [{"items_share": 0.01, "n_items": 1, "events_share": 0.2667}]},
    "event_types": [("view", 1200), ("click", 250), ("purchase", 50)],
}


def _data(days: list[str]) -> dict:
    decisions = [_decision(d, 0.1 + i / 100, None if i == 0 else 0.11, i % 2 == 1) for i, d in enumerate(days)]
    training = {"run_id": "abc123", "run_name": "r", "model_name": "sasrec", "run_date": days[-1],
                "curves": {"train_loss": [(0, 2.5), (1, 1.9), (2, 1.5)], "val ndcg_at_10": [(0, 0.08)]},
                "metrics": {"popularity_bias_at_10": 0.61}}
    return {
        "run_date": days[-1], "run_id": "scheduled__<x>", "generated_at": "2026-10-04T01:00:00+00:00",
        "task_states": {"ingest_events": "success", "check_quality": "failed"},
        "report_task": "write_nightly_report",
        "volumes": [_volume(d, 1_234_567 * (i + 1), 1_234 * (i + 1)) for i, d in enumerate(days)],
        "verdict": _verdict(days[-1], False), "verdicts": [_verdict(d, True) for d in days[:-1]] + [_verdict(days[-1], False)],
        "dbt_docs_index": None, "distributions": DISTRIBUTIONS, "training": training,
        "metrics_table": metrics_table(Settings(home=Path("/nonexistent/recsys")), decisions[-1], training),
        "decisions": decisions, "decision": decisions[-1],
        "samples": [{"user_id": "u<1>", "recent": ["i1", "i2"], "recommended": [
                        {"item_id": "i3", "popularity_rank": 3}, {"item_id": "i9", "popularity_rank": None}],
                     "model_version": "3", "n_popular": 100},
                    {"user_id": "u2", "recent": ["i4"], "recommended": [], "model_version": "3", "n_popular": 100}],
        "alerts": [{"task_id": "check_quality", "exception": "QualityGateFailed " + "x" * 1000,
                    "alerted_at": "2026-10-04T00:50:00"}],
    }


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, flags=re.S)


def test_the_page_shows_every_section_and_escapes_what_it_quotes():
    page = render(_data(DAYS), metric="ndcg_at_10")
    for anchor in ("volumes", "quality", "distributions", "training", "comparison", "metrics", "decision",
                   "samples"):
        assert f'id="{anchor}"' in page
    assert "<title>Nightly recsys report 2026-10-03</title>" in page
    assert "run_id <code>scheduled__&lt;x&gt;</code>" in page
    assert '<span class="state failed">failed</span>' in page and "<h3>Alerts</h3>" in page
    # the report's own task is not "running": it is this report
    assert "<td>write_nightly_report</td><td><span class=\"muted\">this report</span></td>" in page
    assert "running" not in page
    assert "QualityGateFailed " + "x" * 582 + "</pre>" in page  # the first 600 characters
    # volumes: thousands separators, the share, the reasons in order
    assert "3,703,701" in page and "0.10%" in page and "bad_timestamp: 1, unknown_event_type: 3701" in page
    # quality: gate, Data Docs link, suites, failures, history, the dbt docs not generated
    assert 'Gate <span class="state failed">FAILED</span>' in page
    assert '<a href="file:///tmp/gx/index.html">Great Expectations Data Docs</a>' in page
    assert "<li>events: &lt;null&gt; user ids</li>" in page and "<h3>Warnings</h3>" in page
    assert "<h3>Gate history</h3>" in page and page.count("<td>passed</td>") == 2
    assert "dbt docs (models, lineage, tests): not generated" in page
    # training, decision (with the evaluation summary), samples
    assert "Training — sasrec (MLflow run <code>abc123</code>)" in page
    assert "Reasons: beats_champion: &lt;b&gt;not&lt;/b&gt; significant" in page
    assert "candidate v4 — champion before v3, after v3." in page
    assert "<b>session</b> protocol" in page and "300 validation and 400 test examples" in page
    assert "<td>p=0.2 &amp; &lt;1</td>" in page
    assert "Sample recommendations (champion v3)" in page and "<td>u&lt;1&gt;</td>" in page and "<td>—</td>" in page
    assert 'i3 <span class="muted">(#3)</span>, i9 <span class="muted">(unranked)</span>' in page
    assert "beyond the top 100" in page
    # distributions: the summary line and the top items' share
    text = " ".join(page.split())
    assert ("everything up to 2026-10-03. 662 sessions: median 1 events, mean 1.3, 90th percentile 2, longest 7. "
            "60 items share 1,500 events: the top 1.0% of items (1) hold 26.7% of them.") in text


def test_charts_are_inline_svg_that_fetch_nothing():
    page = render(_data(DAYS), metric="ndcg_at_10")
    svgs = _svgs(page)
    assert len(svgs) == 7  # volumes, three distributions, two training curves, metrics over time
    for svg in svgs:
        ET.fromstring(svg)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<?xml" not in page and "<!DOCTYPE svg" not in page
    ids = re.findall(r'\bid="([^"]+)"', "".join(svgs))
    assert len(ids) == len(set(ids))  # several charts on one page, no clashing ids
    assert render(_data(DAYS), metric="ndcg_at_10").split("<svg", 1)[1] == page.split("<svg", 1)[1]


def test_volume_chart_has_a_panel_per_row_kind_with_readable_counts():
    svg = volume_chart(_data(DAYS)["volumes"])
    assert "written rows" in svg and "quarantined rows" in svg
    assert "3,703,701" in svg and "3,702 (0.10%)" in svg  # bar labels with separators and the share
    assert "<p" in volume_chart([]) and "no data" in volume_chart([])


def test_a_single_night_reads_as_labelled_bars():
    page = render(_data(DAYS[:1]), metric="ndcg_at_10")
    metrics_svg = _svgs(page.split('id="metrics"')[1])[0]
    assert "2026-10-01" in metrics_svg and "0.1" in metrics_svg and "0.05" in metrics_svg
    assert "candidate" in metrics_svg and "popularity" in metrics_svg
    assert "1,234,567" in _svgs(page.split('id="volumes"')[1])[0]


def test_a_series_name_is_shown_as_written():
    svg = svg_line_chart({"cost in $": [(0, 1.0), (1, 2.0)], "b": [(0, None), (1, 1.5)]}, title="a $x$ <&>")
    ET.fromstring(svg)
    assert "cost in $" in svg and "a $x$ &lt;&amp;&gt;" in svg


def test_an_empty_night_is_reported_plainly():
    data = _data(DAYS) | {"volumes": [], "verdict": None, "verdicts": [], "training": None, "decisions": [],
                          "decision": None, "samples": [], "alerts": [], "task_states": {}, "report_task": None,
                          "distributions": None, "metrics_table": None}
    page = render(data, metric="ndcg_at_10")
    assert "No quality verdict for this date" in page and "No training run for this date" in page
    assert "No distributions" in page and "No candidate was trained for this date" in page
    assert "No promotion decision for this date" in page and "No champion or no users" in page
    assert "Rows per arrival day: no data." in page and "candidate vs champion vs popularity: no data." in page
    assert "<svg" not in page and "<h3>Alerts</h3>" not in page


@pytest.mark.slow
def test_the_cli_writes_the_page_and_its_data(settings, monkeypatch, capsys):
    day = date(2026, 10, 2)
    for folder, name, record in (
            (settings.reconciliation_dir, "2026-10-02.json", {"arrival_date": "2026-10-02", "input_rows": 1500,
                                                              "written_rows": 1490, "quarantined_rows": 10}),
            (settings.reconciliation_dir, "2026-10-03.json", {"arrival_date": "2026-10-03", "input_rows": 9}),
            (settings.quality_dir, "2026-10-02.json", _verdict("2026-10-02", True)),
            (settings.decisions_dir, "2026-10-02.json", _decision("2026-10-02", 0.2, 0.1, True))):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(record))
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    main(["--date", day.isoformat()])
    result = json.loads(capsys.readouterr().out)
    page = settings.home / "reports" / "2026-10-02" / "index.html"
    assert result["report_path"] == str(page) and result["report_url"] == page.resolve().as_uri()
    assert result["gate_passed"] is True and result["promoted"] is True and result["alerts"] == 0
    data = json.loads((page.parent / "report.json").read_text())
    assert [v["arrival_date"] for v in data["volumes"]] == ["2026-10-02"]  # not the later day
    assert data["volumes"][0]["quarantine_share"] == pytest.approx(10 / 1500)
    assert "1,490" in page.read_text() and "PROMOTED" in page.read_text()
    assert write_report(settings, day, task_states={"check_quality": "success", "write_nightly_report": "running"}
                        )["report_path"] == str(page)  # rewritten in place
    # the report's own task is listed as this report, never as "running"
    data = json.loads((page.parent / "report.json").read_text())
    assert data["task_states"] == {"check_quality": "success"} and data["report_task"] == "write_nightly_report"
    assert "running" not in page.read_text() and ">this report<" in page.read_text()
    assert sorted(p.name for p in page.parent.iterdir()) == ["index.html", "report.json"]  # no temp file left
