"""The catalog-scale serving benchmarks' bookkeeping: the capacity search finds the boundary it
is given, every figure becomes a complete record, and the docs tables are read back from them.
Timing is not asserted (the figures depend on the machine)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from benchmarks import report_docs, serving_capacity, serving_catalog

FIELDS = {"metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date"}


def load(rate: float, p99: float, errors: int = 0, achieved: float | None = None) -> dict:
    return {"rate": rate, "requests": int(rate), "ok": int(rate) - errors, "errors": errors, "fallbacks": 0,
            "feature_timeouts": 0, "throughput": rate if achieved is None else achieved, "p50": p99 / 3,
            "p99": p99, "service_p50": p99 / 4, "service_p99": p99 / 2}


def test_capacity_search_finds_the_highest_passing_rate():
    def probe_below(limit):
        return lambda rate: load(rate, 5.0 if rate <= limit else 80.0)

    capacity, tried = serving_capacity.search(probe_below(430), 50, 3200, steps=4, p99_ms=20)
    assert capacity == 425  # 400 passes, 800 fails; bisections 600, 500, 450, 425
    assert [t["rate"] for t in tried] == [50, 100, 200, 400, 800, 600, 500, 450, 425]
    capacity, tried = serving_capacity.search(probe_below(20), 50, 3200, steps=1, p99_ms=20)
    assert capacity == 19 and [t["rate"] for t in tried] == [50, 25, 12.5, 19]  # halving, then one bisection
    assert serving_capacity.search(probe_below(0.1), 50, 3200, steps=3, p99_ms=20)[0] == 0
    assert serving_capacity.search(probe_below(10**6), 50, 400, steps=3, p99_ms=20)[0] == 400  # the cap
    # errors or a rate not achieved fail a probe whatever its p99
    assert not serving_capacity.passes(load(100, 5.0, errors=1), 20)
    assert not serving_capacity.passes(load(100, 5.0, achieved=90.0), 20)


def catalog_records() -> list[dict]:
    inproc = {"recall_at_10": 0.991, "users": 1000, "candidates": 200, "breadth": 128,
              "ann_model": {"p50": 0.9, "p99": 1.8}, "exact_model": {"p50": 40.0, "p99": 60.0},
              "index": {"build_seconds": 300.0, "index_bytes": 512 * 2**20}}
    loads = [load(200, 9.0) | {"mode": "ann", "store": "sqlite"},
             load(200, 5000.0, errors=12) | {"mode": "exact", "store": "sqlite"}]
    return serving_catalog.to_records(inproc, loads, "synthetic catalog, 1000000 items", "python -m x",
                                      {"cpu_model": "x"}, "d")


def test_catalog_records_are_complete_and_the_table_reads_them(tmp_path: Path):
    records = catalog_records()
    assert all(set(r) == FIELDS for r in records)
    by = {(r["metric"], r["model"]): r for r in records}
    ann_api = next(m for (metric, m) in by if metric == "p99_latency" and "index" in m)
    assert by[("p99_latency", ann_api)]["value"] == 9.0
    assert "exact scoring of every item" in by[("p99_latency", ann_api)]["baseline"]
    assert any(r["metric"] == "recall_at_10" and r["value"] == 0.991 for r in records)
    assert any(r["metric"] == "index_size_mib" and r["value"] == 512.0 for r in records)
    section = report_docs.render_section("serving_catalog", records, tmp_path)
    assert "| index (faiss HNSW, 200 candidates, ef 128) + exact re-scoring | sqlite | 200 | 200.0 |" in section
    assert "| exact scoring of every item | sqlite | 200 | 200.0 | 1666.67 | 5000.00 | 2500.00 | 12 | 0 |" in section
    assert "| recall_at_10 |" in section and "0.9910" in section


def test_capacity_records_and_table(tmp_path: Path):
    args = SimpleNamespace(p99_ms=20.0, duration=10.0)
    rows = [{"items": 1_000_000, "store": "redis", "workers": 2, "retrieval": "ann", "capacity": 425.0,
             "p99_at_capacity": 14.2, "probes": 9},
            {"items": 300, "store": "sqlite", "workers": 1, "retrieval": "exact", "capacity": 0.0,
             "p99_at_capacity": None, "probes": 6}]
    records = serving_capacity.to_records(rows, args, "python -m benchmarks.serving_capacity", {"cpu_model": "x"}, "d")
    assert all(set(r) == FIELDS for r in records) and len(records) == 6
    section = report_docs.render_section("serving_capacity", records, tmp_path)
    assert "| 1,000,000 | redis | 2 | ann | 425 | 14.20 | 9 |" in section
    assert "| 300 | sqlite | 1 | exact | 0 |  | 6 |" in section
    assert section.startswith("`python -m benchmarks.serving_capacity` — p99 <= 20 ms, 10 s per rate;")
