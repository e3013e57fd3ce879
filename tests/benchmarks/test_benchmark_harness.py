"""The benchmark harness: records, the docs renderer, and the ingestion benchmark at a tiny size.
No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

import json
from pathlib import Path

import sys

import pytest

# `benchmarks` is run from the checkout (python -m benchmarks...), not installed with the packages.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common, report_docs  # noqa: E402
from benchmarks import ingest_throughput as bench  # noqa: E402

# ---- shared helpers (fast) ----


def test_renderer_replaces_only_the_text_between_markers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    hardware = {"cpu_model": "CPU-X", "usable_cores": 2, "ram_gib": 8.0, "os": "OS", "python": "3.11"}

    def rec(metric: str, value: float, model: str, dataset: str) -> dict:
        return common.record(metric, value, "ms", dataset=dataset, model=model, baseline=None,
                             command="python -m benchmarks.feature_latency", hardware=hardware, date="d")

    common.update_results(results / "feature_latency.json", [
        rec("read_latency_p50", 0.5, "direct (sqlite)", "10 users, K=5, 1 user"),
        rec("read_latency_p99", 1.25, "direct (sqlite)", "10 users, K=5, 1 user"),
        rec("materialize_throughput", 1234.0, "features.store.materialize (sqlite)", "10 users, K=5")])
    docs = ("# Benchmarks\n\nHand-written intro.\n\n<!-- BEGIN benchmark: feature_latency -->\nold table\n"
            "<!-- END benchmark: feature_latency -->\n\nProse after.\n\n<!-- BEGIN benchmark: serving_load -->\n"
            "no results file: kept\n<!-- END benchmark: serving_load -->\n")
    text, done = report_docs.render_docs(docs, results)
    assert done == ["feature_latency"]
    assert "old table" not in text and "no results file: kept" in text
    assert text.startswith("# Benchmarks\n\nHand-written intro.") and "\n\nProse after.\n" in text
    assert "`python -m benchmarks.feature_latency` on CPU-X, 2 cores, 8.0 GiB RAM, OS, Python 3.11." in text
    assert "| path | request | p50 ms | p99 ms |\n|---|---|---|---|\n| direct (sqlite) | 1 user | 0.500 | 1.250 |" in text
    assert "| features.store.materialize (sqlite) | 1,234 |" in text
    again, _ = report_docs.render_docs(text, results)
    assert again == text  # rendering twice changes nothing


def test_renderer_reproduces_the_committed_tables() -> None:
    """Every generated section of docs/benchmarks.md is what the committed results files give."""
    committed = common.DOCS_PATH.read_text(encoding="utf-8")
    rendered, done = report_docs.render_docs(committed, common.RESULTS_DIR)
    # A section whose benchmark has not been measured yet (no results file) keeps empty markers.
    measured = {name for name in report_docs.SECTIONS if common.read_results(common.RESULTS_DIR / f"{name}.json")}
    assert set(done) == measured and {"amazon_loo", "serving_load", "ingest_throughput"} <= measured
    assert rendered == committed


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
def test_benchmark_command_writes_complete_records(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    argv = ["--events", "20000", "--work-dir", str(tmp_path / "work"), "--results", str(results),
            "--gen-workers", "1"]
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
        assert value(bench.SPARK, metric) > 0 and value(bench.FLOOR, metric) > 0
    assert value(bench.SPARK, "ratio_vs_baseline") > 0
    # Both sides read every generated line; the floor writes them all, the job quarantines some.
    assert value(bench.SPARK, "input_rows") == value(bench.FLOOR, "input_rows") == value(bench.FLOOR, "written_rows")
    assert value(bench.SPARK, "quarantined_rows") > 0 and value(bench.SPARK, "duplicate_rows") > 0
    assert value(bench.SPARK, "written_rows") < value(bench.FLOOR, "written_rows")
    section = report_docs.render_section("ingest_throughput", records, tmp_path)
    lines = f"{value(bench.SPARK, 'input_rows'):,}"
    assert f"| generated-20k | {lines} | floor: read+write only (DuckDB) |" in section
    assert f"| generated-20k | {lines} | Spark ingest_arrival_day |" in section

    # A re-run reuses the generated logs.
    summaries = list((tmp_path / "work" / "data").glob("*/summary.json"))
    assert len(summaries) == 1
    before = summaries[0].stat().st_mtime_ns
    cached = bench.prepare_dataset(tmp_path / "work", 20_000, None, 0, 1, log=lambda _: None)
    assert cached.folder == summaries[0].parent and summaries[0].stat().st_mtime_ns == before
    assert cached.lines == value(bench.SPARK, "input_rows")
