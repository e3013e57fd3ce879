"""The nightly DAG's production wiring on a real (tiny) run: the report is written for a good
night and for a night the quality gate stops, the failed task leaves an alert record, and every
stage logs structured lines with the run id and date."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

FIRST_DAY = date(2026, 10, 1)
HISTORY_DAYS = 3
RUN_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)
CORRUPT_DAY = RUN_DAY + timedelta(days=1)


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    from ingest.generator import generate_logs
    from pipeline.run_dag import run_nightly
    from pipeline.stages import ingest_events_range

    home = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_HOME", str(home))
    mp.setenv("RECSYS_SPARK_MASTER", "local[2]")
    # 300 users give about a hundred test examples: below the production evidence floor, and the
    # good night must promote for the report to show a champion's samples.
    mp.setenv("RECSYS_MIN_EVAL_EXAMPLES", "20")
    settings = Settings.from_env()
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   capture_output=True)
    generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 2, n_users=300, n_items=60,
                  seed=11, corrupt_dates=[CORRUPT_DAY])
    ingest_events_range(settings, FIRST_DAY, RUN_DAY - timedelta(days=1))
    good = run_nightly(RUN_DAY, model="popularity", epochs=1)
    bad = run_nightly(CORRUPT_DAY, model="popularity", epochs=1)
    yield settings, good, bad
    mp.undo()


def test_good_night_is_reported(nights):
    settings, good, _ = nights
    assert good["state"] == "success", good
    assert good["tasks"]["write_nightly_report"] == "success", good
    page = settings.home / "reports" / RUN_DAY.isoformat() / "index.html"
    html = page.read_text()
    for section in ('id="volumes"', 'id="quality"', 'id="distributions"', 'id="training"', 'id="comparison"',
                    'id="metrics"', 'id="decision"', 'id="samples"'):
        assert section in html, section
    data = json.loads((page.parent / "report.json").read_text())
    assert [v["arrival_date"] for v in data["volumes"]][-1] == RUN_DAY.isoformat()
    assert 0 < data["volumes"][-1]["quarantine_share"] < 1
    assert data["verdict"]["passed"] is True and "Great Expectations Data Docs" in html
    assert data["dbt_docs_index"] and Path(data["dbt_docs_index"]).exists()  # dbt docs generate ran
    assert data["decision"]["run_date"] == RUN_DAY.isoformat() and "Reasons:" in html
    # popularity has no epochs: the run is found, its curves are empty (sasrec's are per epoch)
    assert data["training"]["model_name"] == "popularity" and "train_loss" in data["training"]["curves"]
    assert data["samples"] and all(s["recommended"] for s in data["samples"])
    # 60 items, all in the champion's top-100 popularity list: every recommendation has a rank
    assert all(isinstance(r["popularity_rank"], int) for s in data["samples"] for r in s["recommended"])
    assert data["task_states"].get("promote_candidate") == "success"
    assert "write_nightly_report" not in data["task_states"] and data["report_task"] == "write_nightly_report"
    # the metrics table: the candidate and the baseline on the test window, @10 and @20
    table = data["metrics_table"]
    rows = {row["label"]: row for row in table["rows"]}
    assert {"candidate (popularity)", "popularity baseline"} <= set(rows)
    for key in ("hr_at_10", "ndcg_at_10", "mrr_at_10", "hr_at_20", "ndcg_at_20", "mrr_at_20", "coverage_at_10"):
        assert rows["candidate (popularity)"]["values"][key] is not None, key
    assert rows["candidate (popularity)"]["values"]["popularity_bias_at_10"] is not None
    assert table["deltas"][-1]["label"] == "candidate − popularity"
    # the distributions of the warehouse's data
    dist = data["distributions"]
    assert dist["session_lengths"] and dist["item_tail"]["n_items"] == len(dist["item_tail"]["points"])
    assert {kind for kind, _ in dist["event_types"]} and dist["session_summary"]["n_sessions"] > 0
    assert html.count("<svg") >= 5  # volumes, 3 distributions, metrics over time (+ per-epoch curves)


def test_gate_failure_fails_the_run_but_the_report_is_written(nights):
    settings, _, bad = nights
    assert bad["state"] == "failed", bad  # the report teardown does not hide the failure
    assert bad["tasks"]["check_quality"] == "failed"
    assert bad["tasks"]["promote_candidate"] == "upstream_failed"
    assert bad["tasks"]["write_nightly_report"] == "success"
    data = json.loads((settings.home / "reports" / CORRUPT_DAY.isoformat() / "report.json").read_text())
    assert data["verdict"]["passed"] is False and data["decision"] is None
    assert [a["task_id"] for a in data["alerts"]] == ["check_quality"]


def test_failed_task_writes_an_alert_record(nights):
    settings, *_ = nights
    from pipeline.alerts import load_alerts

    alerts = load_alerts(settings)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["dag_id"] == "nightly_recsys" and alert["task_id"] == "check_quality"
    assert alert["date"] == CORRUPT_DAY.isoformat() and alert["run_id"]
    assert alert["exception_type"] == "QualityGateFailed" and "quality gate failed" in alert["exception"]
    assert (settings.home / "alerts" / f"{CORRUPT_DAY}.jsonl").exists()
