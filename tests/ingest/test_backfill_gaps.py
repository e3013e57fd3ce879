"""A backfill over a range with arrival days that have no raw folder: those days are skipped with
one log line each and a summary; ``strict`` refuses the range in one line before ingesting
anything; a range without any raw folder is one line; the CLI never shows a traceback for these."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from ingest.ingest_day import MissingArrivalDay, arrival_days, main, plan_arrival_days
from core.errors import UserError
from core.settings import Settings
from tests.ingest.conftest import make_settings
from tests.ingest.test_backfill import backfill_dag  # noqa: F401 - the fixture (migrated DB, parsed DAG)

FIRST = date(2026, 11, 1)
LAST = FIRST + timedelta(days=4)
GAPS = [FIRST + timedelta(days=1), LAST]  # the second and the last day have no raw folder


def with_gaps(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path)
    for offset in (0, 2, 3):
        (settings.raw_dir / (FIRST + timedelta(days=offset)).isoformat()).mkdir(parents=True)
    return settings


def test_days_without_raw_folder_are_skipped_with_one_log_line_each(tmp_path: Path, caplog) -> None:
    settings = with_gaps(tmp_path)
    caplog.set_level(logging.INFO, logger="ingest.ingest_day")
    plan = plan_arrival_days(settings, FIRST, LAST)
    # An empty raw folder is a day that arrived empty: ingested (zero rows), never skipped.
    assert plan.days == [FIRST, FIRST + timedelta(days=2), FIRST + timedelta(days=3)]
    assert plan.skipped == GAPS
    skipped_lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped_lines == [f"arrival day {day} skipped: no raw folder {settings.raw_dir / day.isoformat()}"
                             for day in GAPS]
    assert arrival_days(settings, FIRST, LAST) == plan.days
    assert not settings.lake_dir.exists()


def test_strict_refuses_a_range_with_gaps_in_one_line_before_ingesting(tmp_path: Path) -> None:
    from pipeline.stages import ingest_events_range

    settings = with_gaps(tmp_path)
    for call in (lambda: plan_arrival_days(settings, FIRST, LAST, strict=True),
                 lambda: ingest_events_range(settings, FIRST, LAST, strict=True)):
        with pytest.raises(MissingArrivalDay) as caught:
            call()
        message = str(caught.value)
        assert message == (f"2 of 5 arrival days of {FIRST}..{LAST} have no raw folder under {settings.raw_dir}: "
                           f"{GAPS[0]}, {GAPS[1]}; strict mode ingests nothing (without it these days are skipped)")
        assert caught.value.missing == GAPS and isinstance(caught.value, (UserError, FileNotFoundError))
    assert not settings.lake_dir.exists() and not settings.reconciliation_dir.exists()


def test_a_range_without_any_raw_folder_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(MissingArrivalDay, match="^no arrival day of 2026-11-01..2026-11-05 has a raw folder"):
        plan_arrival_days(settings, FIRST, LAST)
    with pytest.raises(MissingArrivalDay, match="^raw folder of the arrival day not found: .*/raw/2026-11-01$"):
        plan_arrival_days(settings, FIRST, FIRST)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_cli_user_errors_are_one_line_with_exit_status_2(tmp_path: Path, monkeypatch, capsys) -> None:
    settings = with_gaps(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    monkeypatch.delenv("RECSYS_DEBUG", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["--date", FIRST.isoformat(), "--to", LAST.isoformat(), "--strict"])
    assert exited.value.code == 2
    line = _one_error_line(capsys)
    assert f"{GAPS[0]}, {GAPS[1]}; strict mode ingests nothing" in line

    with pytest.raises(SystemExit) as exited:
        main(["--date", "2026-10-01", "--to", "2026-10-03"])
    assert exited.value.code == 2
    assert _one_error_line(capsys).startswith("error: no arrival day of 2026-10-01..2026-10-03 has a raw folder")

    with pytest.raises(SystemExit) as exited:
        main(["--date", GAPS[0].isoformat()])
    assert exited.value.code == 2
    assert _one_error_line(capsys) == (f"error: raw folder of the arrival day not found: "
                                       f"{settings.raw_dir / GAPS[0].isoformat()}")
    assert not settings.lake_dir.exists()

    # --debug (or RECSYS_DEBUG=1): the exception itself, for its traceback.
    with pytest.raises(MissingArrivalDay):
        main(["--date", GAPS[0].isoformat(), "--debug"])


def test_cli_shows_no_traceback(tmp_path: Path) -> None:
    settings = with_gaps(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_DEBUG"} | {"RECSYS_HOME": str(settings.home)}
    command = [sys.executable, "-m", "ingest.ingest_day", "--date", FIRST.isoformat(), "--to", LAST.isoformat(),
               "--strict"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: 2 of 5 arrival days"), proc.stderr
    debug = subprocess.run(command, env=env | {"RECSYS_DEBUG": "1"}, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MissingArrivalDay" in debug.stderr


def test_backfill_dag_strict_param_fails_the_plan_in_one_line(backfill_dag, tmp_path: Path, monkeypatch) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    params = copy.deepcopy(backfill_dag.params)
    assert params["strict"] is False  # skipping days without raw folder is the default
    with pytest.raises(ParamValidationError):
        params["strict"] = "yes"

    settings = with_gaps(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    run = backfill_dag.test(run_conf={"start": FIRST.isoformat(), "end": LAST.isoformat(), "strict": True})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"plan_arrival_days": "failed", "ingest_arrival_days": "upstream_failed",
                      "build_sessions": "upstream_failed"}
    assert not settings.lake_dir.exists()
    (alert,) = [json.loads(line) for path in (settings.home / "alerts").glob("*.jsonl")
                for line in path.read_text().splitlines()]
    assert alert["task_id"] == "plan_arrival_days" and alert["exception_type"] == "MissingArrivalDay"
    assert "\n" not in alert["exception"] and f"{GAPS[0]}, {GAPS[1]}" in alert["exception"]


@pytest.mark.slow
def test_a_backfill_with_gaps_ingests_the_other_days(
    tmp_path: Path, spark, backfill_dag, monkeypatch, capsys,
) -> None:
    from ingest.generator import generate_logs
    from pipeline.stages import ingest_events_range

    settings = make_settings(tmp_path / "home")
    generate_logs(settings.raw_dir, FIRST, days=4, n_users=60, n_items=30, seed=3, defect_rate=0.05)
    shutil.rmtree(settings.raw_dir / GAPS[0].isoformat())  # LAST (day 5) was never generated
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    monkeypatch.setenv("RECSYS_SPARK_MASTER", settings.spark_master)
    present = [FIRST, FIRST + timedelta(days=2), FIRST + timedelta(days=3)]

    # The CLI: one JSON record per ingested day on stdout, the summary on stderr.
    assert main(["--date", FIRST.isoformat(), "--to", LAST.isoformat()]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["arrival_date"] for line in out.splitlines()] == [d.isoformat() for d in present]
    assert err.splitlines()[-1] == (f"ingested 3 days ({FIRST}..{LAST}), skipped 2 days without raw folder: "
                                    f"{GAPS[0]}, {GAPS[1]}")
    assert sorted(p.stem for p in settings.reconciliation_dir.glob("*.json")) == [d.isoformat() for d in present]

    # The stage (and so the backfill DAG's ingestion task): the skipped days in its summary.
    summary = ingest_events_range(settings, FIRST, LAST)
    assert summary["days"] == 3 and summary["skipped_days"] == [d.isoformat() for d in GAPS]
    assert [r["arrival_date"] for r in summary["reconciliations"]] == [d.isoformat() for d in present]

    # The DAG, not strict: every task succeeds. ("strict" given: within one process dag.test()
    # keeps a param an earlier run's conf set, and the strict test may have run before.)
    run = backfill_dag.test(run_conf={"start": FIRST.isoformat(), "end": LAST.isoformat(), "strict": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"plan_arrival_days": "success", "ingest_arrival_days": "success", "build_sessions": "success"}
