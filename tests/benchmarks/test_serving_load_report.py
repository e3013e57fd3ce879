"""The serving benchmark's report: every figure it measures becomes a complete record, the ratios
are computed against the right floor (back-to-back and paced), and the docs table is read back
from those records. Timing is not asserted."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report_docs, serving_load

FIELDS = {"metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date"}


def a_run() -> dict:
    load = {"rate": 200.0, "requests": 2000, "ok": 2000, "errors": 0, "fallbacks": 4, "feature_timeouts": 2,
            "throughput": 199.0, "p50": 3.0, "p99": 6.0, "service_p50": 2.0, "service_p99": 4.0, "server_mean": 1.1}
    floor = {"feature_read": {"p50": 0.2, "p99": 0.5, "mean": 0.3},
             "model_forward": {"p50": 0.8, "p99": 1.5, "mean": 0.9},
             "floor": {"p50": 1.0, "p99": 2.0, "mean": 1.2}}
    return {"store": "redis", "floor": floor, "paced_floor": {200.0: {"p50": 1.6, "p99": 3.2, "mean": 1.8}},
            "loads": [load]}


def records() -> list[dict]:
    return serving_load.to_records([a_run()], "ring", "python -m benchmarks.serving_load", {"cpu_model": "x"}, "d")


def test_records_are_complete_and_ratios_use_their_floor() -> None:
    found = records()
    assert all(set(r) == FIELDS for r in found)
    by_metric = {r["metric"]: r["value"] for r in found}
    assert by_metric["service_p50_vs_floor"] == 2.0 and by_metric["service_p99_vs_floor"] == 2.0
    assert by_metric["service_p50_vs_paced_floor"] == 1.25 and by_metric["service_p99_vs_paced_floor"] == 1.25
    assert by_metric["server_mean_latency"] == 1.1 and by_metric["paced_floor_p99"] == 3.2
    # pacing alone, against the back-to-back floor: what a server adding nothing would score
    assert by_metric["paced_floor_p50_vs_floor"] == 1.6 and by_metric["paced_floor_p99_vs_floor"] == 1.6
    assert by_metric["feature_timeout_share"] == 0.001
    assert {r["dataset"] for r in found} == {"ring, redis online store, 200 req/s"}


def test_docs_table_is_read_back_from_the_records(tmp_path: Path) -> None:
    section = report_docs.render_section("serving_load", records(), tmp_path)
    header, rule, row = section.splitlines()[-3:]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert len(rule.split("|")) == len(header.split("|"))
    assert cells["online store"] == "redis" and cells["offered req/s"] == "200"
    assert cells["service vs paced floor p50/p99"] == "1.25x / 1.25x"
    assert cells["paced floor vs floor p50/p99"] == "1.60x / 1.60x"
    assert cells["server mean ms"] == "1.10" and cells["feature timeout share"] == "0.10 %"
    assert section.startswith("`python -m benchmarks.serving_load` — ring;")
