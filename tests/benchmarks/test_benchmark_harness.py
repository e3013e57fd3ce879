"""The benchmark harness: records, docs sections, and the DuckDB baseline agreeing with the Spark
job line for line. No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sys

import pytest

# `benchmarks` is run from the checkout (python -m benchmarks...), not installed with the packages.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common  # noqa: E402
from benchmarks import ingest_throughput as bench  # noqa: E402

# ---- shared helpers (fast) ----


def test_replace_section_keeps_everything_else(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    common.replace_section(docs, "a", "Section A", "first A")
    common.replace_section(docs, "b", "Section B", "first B")
    docs.write_text(docs.read_text() + "\nHand-written notes.\n")
    common.replace_section(docs, "a", "Section A", "second A")
    text = docs.read_text()
    assert text.startswith("# Benchmarks")
    assert "second A" in text and "first A" not in text
    assert "first B" in text and "Hand-written notes." in text
    assert text.count("## Section A") == 1 and text.index("## Section A") < text.index("## Section B")


def test_update_results_replaces_only_the_measured_datasets(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    hardware = {"cpu_model": "x"}

    def rec(dataset: str, value: float) -> dict:
        return common.record("throughput", value, "events/s", dataset=dataset, model="m", baseline=None,
                             command="c", hardware=hardware, date="d")

    common.update_results(path, [rec("small", 1.0), rec("large", 2.0)])
    merged = common.update_results(path, [rec("small", 3.0)])
    assert sorted((r["dataset"], r["value"]) for r in merged) == [("large", 2.0), ("small", 3.0)]
    assert json.loads(path.read_text()) == merged
    with pytest.raises(ValueError):
        common.update_results(path, [{"metric": "x"}])


def test_revision_is_dirty_for_code_changes_but_not_for_benchmark_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    results, docs, code = tmp_path / "benchmarks" / "results", tmp_path / "docs" / "benchmarks.md", tmp_path / "job.py"
    results.mkdir(parents=True)
    docs.parent.mkdir()
    for path in (results / "x.json", docs, code):
        path.write_text("1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    monkeypatch.delenv("RECSYS_CODE_REVISION", raising=False)
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(common, "RESULTS_DIR", results)
    monkeypatch.setattr(common, "DOCS_PATH", docs)
    clean = common.git_revision()
    assert clean and not clean.endswith("+dirty")

    # A benchmark has just rewritten its results and section: the code measured is the commit's.
    (results / "x.json").write_text("2\n")
    docs.write_text("2\n")
    assert common.git_revision() == clean
    code.write_text("2\n")
    assert common.git_revision() == clean + "+dirty"


def test_event_counts_and_labels() -> None:
    assert bench.parse_count("1M") == bench.parse_count("1_000_000") == 1_000_000
    assert bench.parse_count("20k") == 20_000
    assert bench.dataset_label(10_000_000) == "generated-10M"
    assert bench.dataset_label(20_000) == "generated-20k"
    assert bench.dataset_label(1_500_000) == "generated-1.5M"


def test_default_work_dir_is_never_inside_the_repo(tmp_path: Path) -> None:
    inside = common.default_work_dir("x", {"RECSYS_HOME": str(common.REPO_ROOT / ".recsys")})
    assert not inside.resolve().is_relative_to(common.REPO_ROOT)
    assert common.default_work_dir("x", {"RECSYS_HOME": str(tmp_path)}) == tmp_path.resolve() / "bench" / "x"


# ---- the benchmark command at a tiny size ----


@pytest.mark.slow
def test_benchmark_command_writes_complete_records_and_counts_agree(tmp_path: Path) -> None:
    results, docs = tmp_path / "results.json", tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    argv = ["--events", "20000", "--work-dir", str(tmp_path / "work"), "--results", str(results),
            "--docs", str(docs), "--gen-workers", "1"]
    assert bench.main(argv) == 0

    records = json.loads(results.read_text())
    assert records
    for item in records:
        assert set(item) == set(common.RECORD_KEYS)
        assert item["dataset"] == "generated-20k"
        assert item["command"] == "python -m benchmarks.ingest_throughput " + " ".join(argv)
        assert {"cpu_model", "usable_cores", "ram_gib", "os", "spark_master"} <= set(item["hardware"])
        # The figures depend on the line parser the job resolved to; the record names it.
        assert item["hardware"]["ingest_parser"] in ("jvm", "sql")

    def value(model: str, metric: str):
        [match] = [r["value"] for r in records if (r["model"], r["metric"]) == (model, metric)]
        return match

    for metric in ("throughput", "wall_time", "peak_rss"):
        assert value(bench.SPARK, metric) > 0 and value(bench.BASELINE, metric) > 0
    assert value(bench.SPARK, "ratio_vs_baseline") > 0
    for metric in ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows"):
        assert value(bench.SPARK, metric) == value(bench.BASELINE, metric)
    # The generator planted defects; both sides found them.
    assert value(bench.SPARK, "quarantined_rows") > 0 and value(bench.SPARK, "duplicate_rows") > 0
    text = docs.read_text()
    assert "## Other\n\nkept" in text and "## Ingestion throughput" in text and "generated-20k" in text

    # A re-run reuses the generated logs.
    summaries = list((tmp_path / "work" / "data").glob("*/summary.json"))
    assert len(summaries) == 1
    before = summaries[0].stat().st_mtime_ns
    cached = bench.prepare_dataset(tmp_path / "work", 20_000, None, 0, 1, log=lambda _: None)
    assert cached.folder == summaries[0].parent and summaries[0].stat().st_mtime_ns == before
    assert cached.lines == value(bench.SPARK, "input_rows")


# ---- the baseline applies the Spark job's rules, edge cases included ----


def _event(event_id: object, event_time: object = "2026-11-20T10:00:00.123Z", **fields: object) -> str:
    record: dict = {"event_id": event_id, "event_time": event_time, "user_id": "u1", "item_id": "i1",
                    "event_type": "view"}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...}, separators=(",", ":"))


EDGE_LINES = [
    "", "   ", '{"event_id":"b1","event_time":', "not json", "[1,2]", "null",
    _event("b2") + " trailing", _event("b3") + _event("b4"), "{'event_id':'b5'}",
    '{"event_id":"b6","event_id":"b7","event_time":"2026-11-20T10:00:00Z","user_id":"u","item_id":"i",'
    '"event_type":"view"}',
    _event("b8", extra={"q": 1})[:-2] + ',"q":2}}',  # duplicate key inside extra
    _event("b9")[:-1] + ',"n":NaN}', _event("b10")[:-1] + ',"n":[1,]}',
    _event(...), _event("c1", item_id=None), _event("c2", user_id="  "), _event("c3", event_time=..., item_id=...),
    _event("d1", event_time="2026/11/20 10:00:00"), _event("d2", event_time="2026-11-20T10:00:00"),
    _event("d3", event_time="2026"), _event("d4", event_time="2026-13-45T99:00:00Z"),
    _event("d5", event_time=1795168800000), _event("d6", user_id=12), _event("d7", extra="free text"),
    _event("d8", session_id={"id": 1}), _event("d9", event_time="2026-11-20T10:00:00+25:00"),
    _event("d10", event_time="2026-11-20T10:00:00+02:75"), _event("d11", event_time="2026-11-20T24:00:00Z"),
    _event("e1", event_type="share"), _event("e2", event_type="VIEW"),
    _event("f1", event_time="2026-11-21T01:00:00.001Z"), _event("g1", event_time="2026-10-20T23:59:59Z"),
    '{"event_id":"h1","padding":"' + "x" * 20_000,
    _event("h2", extra={"padding": "x" * 1_500_000}),  # over the job's line limit (1 MiB)
    # accepted
    _event("a1", session_id="s1", extra={"price": 9.5, "tags": ["x"], "note": "a,nan,inf"}),
    _event("a2", event_time="2026-11-20T01:30:00+02:00", session_id=""),
    _event("a3", event_time="2026-11-18T12:00:00Z"), _event("a4", event_time="2026-11-21T01:00:00Z", extra=None),
    _event("a5", event_time="2026-10-21T00:00:00Z"), _event("a6", item_id="i2"), _event("a6", item_id="i9"),
    _event("a7", event_time="2026-11-20T10:00:00.123456789Z"), _event("a8", event_time="2026-11-20 10:00:00Z"),
    _event("a9", event_time="2026-11-20T10:00:00-0130"), _event("a1", session_id="s1"),
]


@pytest.mark.slow
def test_baseline_agrees_with_spark_on_edge_cases(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    day = folder / "raw" / bench.ARRIVAL_DATE.isoformat()
    day.mkdir(parents=True)
    (day / "part-a.jsonl").write_text("".join(line + "\n" for line in EDGE_LINES))
    (day / "part-b.jsonl").write_text(_event("a10", event_type="purchase") + "\n" + _event("a1") + "\n")
    (day / ".hidden.jsonl").write_text(_event("z1") + "\n")
    dataset = bench.Dataset("edge-cases", 0, 2, 0, folder, {"lines": len(EDGE_LINES) + 2})
    env = {**os.environ, "RECSYS_SPARK_MASTER": "local[2]", "RECSYS_SPARK_DRIVER_MEMORY": "1g"}

    spark = bench.measured_run("spark", dataset, tmp_path / "spark", env)
    baseline = bench.measured_run("duckdb", dataset, tmp_path / "duckdb", env)

    assert spark.reconciliation["input_rows"] == len(EDGE_LINES) + 2
    assert len(spark.reconciliation["quarantine_reasons"]) >= 10, spark.reconciliation
    assert bench.count_mismatches(spark.reconciliation, baseline.reconciliation) == {}
    assert bench.compare_lakes(spark.home, baseline.home, bench.ARRIVAL_DATE) == {
        "events_only_in_spark": 0, "events_only_in_baseline": 0,
        "quarantine_only_in_spark": 0, "quarantine_only_in_baseline": 0,
    }
