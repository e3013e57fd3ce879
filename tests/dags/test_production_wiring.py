"""Production wiring of the DAGs: assets, failure callbacks, the report teardown."""

from __future__ import annotations

import pytest

from core.settings import REPO_ROOT


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def _outlet_names(task) -> set[str]:
    return {getattr(o, "name", None) for o in task.outlets}


def test_producing_tasks_update_the_assets(dagbag):
    nightly, backfill = dagbag.dags["nightly_recsys"], dagbag.dags["backfill_recsys"]
    assert _outlet_names(nightly.get_task("ingest_events")) == {"recsys_lake_events"}
    # published by the gate once it passed on them: a rejected day never emits the asset
    assert _outlet_names(nightly.get_task("build_sessions")) == set()
    assert _outlet_names(nightly.get_task("check_quality")) == {"recsys_session_tables"}
    assert _outlet_names(nightly.get_task("materialize_features")) == {"recsys_online_features"}
    assert _outlet_names(backfill.get_task("ingest_arrival_days")) == {"recsys_lake_events"}
    assert _outlet_names(backfill.get_task("build_sessions")) == {"recsys_session_tables"}


def test_every_task_alerts_on_failure(dagbag):
    from pipeline.alerts import on_task_failure

    for dag_id in ("nightly_recsys", "backfill_recsys"):
        for task in dagbag.dags[dag_id].tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert on_task_failure in callbacks, (dag_id, task.task_id)


def test_report_runs_last_whatever_happened_and_keeps_the_schedule(dagbag):
    dag = dagbag.dags["nightly_recsys"]
    report = dag.get_task("write_nightly_report")
    assert report.is_teardown and not report.on_failure_fail_dagrun  # never changes the run's state
    assert "promote_candidate" in report.upstream_task_ids
    assert "check_quality" in report.upstream_task_ids
    assert dag.timetable.expression == "0 2 * * *"


def test_alert_callback_writes_a_json_line(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    from pipeline.alerts import on_task_failure

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    ti = SimpleNamespace(dag_id="nightly_recsys", task_id="check_quality", try_number=1,
                         log_url="http://x/log", xcom_pull=lambda **_: "2026-11-21")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        on_task_failure({"ti": ti, "run_id": "manual__1", "exception": exc, "params": {}})
    (line,) = (tmp_path / "alerts" / "2026-11-21.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record | {"alerted_at": None, "traceback": None} == {
        "alerted_at": None, "dag_id": "nightly_recsys", "task_id": "check_quality", "run_id": "manual__1",
        "try_number": 1, "date": "2026-11-21", "exception_type": "RuntimeError", "exception": "boom",
        "user_error": False, "traceback": None, "log_url": "http://x/log"}
    assert "boom" in record["traceback"]


def test_structured_logs_carry_run_id_and_date():
    import io
    import json
    import logging

    from core.logging_setup import stage_logging

    for fmt in ("kv", "json"):
        out = io.StringIO()
        with stage_logging("ingest_events", run_id="manual__x y", run_date="2026-11-20",
                           dag_id="nightly_recsys", stream=out, fmt=fmt):
            logging.getLogger("ingest.ingest_day").info("wrote %d rows", 5, extra={"rows": 5})
        line = out.getvalue().strip().splitlines()[-1]
        if fmt == "json":
            rec = json.loads(line)
            assert rec["run_id"] == "manual__x y" and rec["run_date"] == "2026-11-20"
            assert rec["stage"] == "ingest_events" and rec["rows"] == 5 and rec["msg"] == "wrote 5 rows"
        else:
            assert 'run_id="manual__x y"' in line and "run_date=2026-11-20" in line
            assert "stage=ingest_events" in line and 'msg="wrote 5 rows"' in line and "rows=5" in line


def test_svg_chart_is_valid_xml():
    import xml.etree.ElementTree as ET

    from pipeline.report_charts import svg_line_chart

    svg = svg_line_chart({"a": [(1, 0.1), (2, 0.3)], "b": [(1, None), (2, 0.2)]}, title="t <&>")
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "no data" in svg_line_chart({"a": []}, title="empty")
