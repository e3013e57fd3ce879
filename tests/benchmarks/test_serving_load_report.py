"""The serving benchmark's report: every figure it prints also becomes a complete record, and the
ratios are computed against the right floor (back-to-back and paced). Timing is not asserted."""

from __future__ import annotations

from benchmarks import serving_load

FIELDS = {"metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date"}


def a_run() -> dict:
    load = {"rate": 200.0, "requests": 2000, "ok": 2000, "errors": 0, "fallbacks": 0, "feature_timeouts": 0, "throughput": 199.0,
            "p50": 3.0, "p99": 6.0, "max": 9.0, "service_p50": 2.0, "service_p99": 4.0, "server_mean": 1.1}
    floor = {"feature_read": {"p50": 0.2, "p99": 0.5, "mean": 0.3},
             "model_forward": {"p50": 0.8, "p99": 1.5, "mean": 0.9},
             "floor": {"p50": 1.0, "p99": 2.0, "mean": 1.2}}
    return {"store": "redis", "floor": floor, "paced_floor": {200.0: {"p50": 1.6, "p99": 3.2, "mean": 1.8}},
            "loads": [load]}


def test_records_are_complete_and_ratios_use_their_floor() -> None:
    records = serving_load.to_records([a_run()], "ring", "python -m benchmarks.serving_load", {"cpu": "x"}, "d")
    assert all(set(r) == FIELDS for r in records)
    by_metric = {r["metric"]: r["value"] for r in records}
    assert by_metric["service_p50_vs_floor"] == 2.0 and by_metric["service_p99_vs_floor"] == 2.0
    assert by_metric["service_p50_vs_paced_floor"] == 2.0 / 1.6
    assert by_metric["service_p99_vs_paced_floor"] == 4.0 / 3.2
    assert by_metric["server_mean_latency"] == 1.1 and by_metric["paced_floor_p99"] == 3.2
    # pacing alone, against the back-to-back floor: what a server adding nothing would score
    assert by_metric["paced_floor_p50_vs_floor"] == 1.6 / 1.0
    assert by_metric["paced_floor_p99_vs_floor"] == 3.2 / 2.0


def test_table_rows_match_the_headers() -> None:
    rows = serving_load.rows_of([a_run()])
    assert len(rows) == 1 and len(rows[0]) == len(serving_load.HEADERS)
    row = dict(zip(serving_load.HEADERS, rows[0]))
    assert row["service vs paced floor p50/p99"] == "1.25x / 1.25x"
    assert row["server mean ms"] == "1.10"
    assert row["paced floor vs floor p50/p99"] == "1.60x / 1.60x"
