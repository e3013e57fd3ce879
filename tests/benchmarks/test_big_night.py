"""benchmarks.big_night at a tiny size: the real command, every stage of the DAG measured in its
own process, and a night that ends with a promotion decision. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest_events", "build_sessions", "check_quality", "materialize_features", "train_candidate",
          "evaluate_candidate", "promote_candidate", "write_nightly_report")

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_a_tiny_night_measures_every_stage(tmp_path: Path) -> None:
    results = tmp_path / "big_night.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.big_night", "--events", "20000", "--users", "2000", "--items", "500",
         "--train-minutes", "0.5", "--epochs", "2", "--work-dir", str(tmp_path / "work"), "--results", str(results)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    records = json.loads(results.read_text())
    values: dict[str, dict[str, float]] = {}
    for record in records:
        values.setdefault(record["model"], {})[record["metric"]] = record["value"]
        assert record["dataset"] == "generated day: 20000 events, 2000 users, 500 items; model=auto, 0.5 training minutes"
    for stage in STAGES:
        assert values[stage]["ok"] == 1, stage
        assert values[stage]["wall_s"] > 0 and values[stage]["cpu_s"] > 0 and values[stage]["peak_rss_mib"] > 0
    assert values["ingest_events"]["input_rows"] == values["generator (not in the night)"]["input_lines"]
    assert values["promote_candidate"]["promote"] in (0, 1)  # the night decided
    assert values["night"]["ok"] == 1 and values["night"]["wall_s"] >= sum(values[s]["wall_s"] for s in STAGES)

    if str(REPO_ROOT) not in sys.path:  # benchmarks is run from the checkout, not installed
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import report_docs

    section = report_docs.render_section("big_night", records, tmp_path)
    assert all(f"| {stage} |" in section for stage in STAGES) and "| night |" in section
