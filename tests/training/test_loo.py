"""Leave-one-out split of Amazon-format files, and the Amazon benchmark harness on a tiny file."""

from __future__ import annotations

import json
from pathlib import Path

import sys

import pytest

from training.loo import leave_one_out_split, load_loo_split, read_user_sequences


def _benchmarks_importable() -> None:
    repo_root = str(Path(__file__).resolve().parents[2])
    if repo_root not in sys.path:  # benchmarks/ is not an installed package
        sys.path.insert(0, repo_root)


def test_split_per_user(tmp_path):
    path = tmp_path / "Toy.txt"
    path.write_text("1 5 6 7 8\n2 10 2 3\n3 4 9\n\n4 1 2 3 4 5 6 7\n")
    split = load_loo_split(path, max_len=3)
    assert split.dataset == "Toy" and split.max_len == 3
    # Catalog = every item of the file, in numeric order: index = rank of the id.
    assert split.vocab.item_ids == [str(i) for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    enc = split.vocab.encode
    # Training = items[:-2]; a user with < 3 items trains on all of them and gives no example.
    assert split.train_sequences == [enc(["5", "6"]), enc(["10"]), enc(["4", "9"]), enc(list("12345"))]
    val = {e.user_id: e for e in split.val_examples}
    test = {e.user_id: e for e in split.test_examples}
    assert set(val) == set(test) == {"1", "2", "4"}
    assert val["1"].input_items == ("5", "6") and val["1"].target_item == "7"
    assert test["1"].input_items == ("5", "6", "7") and test["1"].target_item == "8"
    assert val["2"].input_items == ("10",) and val["2"].target_item == "2"
    # Inputs keep the last max_len items.
    assert val["4"].input_items == ("3", "4", "5") and val["4"].target_item == "6"
    assert test["4"].input_items == ("4", "5", "6") and test["4"].target_item == "7"
    # No validation or test target ever reaches the training sequences of its user.
    assert split.train_item_counts[split.vocab.index("8")] == 0
    assert split.train_item_counts[split.vocab.index("5")] == 2
    info = split.info()
    assert info["protocol"] == "leave_one_out" and info["n_users"] == 4 and info["n_events"] == 16


def test_string_ids_and_bad_lines(tmp_path):
    split = leave_one_out_split([("u", ["b", "a", "c", "d"])], max_len=50)
    assert split.vocab.item_ids == ["a", "b", "c", "d"]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n7\n")
    with pytest.raises(ValueError, match="at least one item"):
        read_user_sequences(bad)


def test_real_amazon_files_match_the_readme(shared_data):
    for name, users, items, events in (("Beauty", 22363, 12101, 198502),
                                       ("Sports_and_Outdoors", 35598, 18357, 296337)):
        split = load_loo_split(shared_data / "amazon" / f"{name}.txt")
        assert (split.n_users, split.vocab.n_items, split.n_events) == (users, items, events)
        assert len(split.val_examples) == len(split.test_examples) == users  # 5-core: >= 5 items
        assert split.vocab.item_ids[:3] == ["1", "2", "3"]


def test_benchmark_harness_writes_records_and_docs(tmp_path, amazon_file):
    _benchmarks_importable()
    from benchmarks import amazon_loo, common, report_docs

    data = amazon_file(tmp_path / "Tiny.txt")
    results = tmp_path / "amazon_loo.json"
    # An earlier record of another model and dataset must survive the run.
    other = common.record("ndcg_at_10", 0.5, "ratio", dataset="amazon-Other", model="x", baseline=None,
                          command="c", hardware={}, date="2026-01-01")
    results.write_text(json.dumps([other]))
    argv = ["--file", str(data), "--dataset", "Tiny", "--models", "sasrec,popularity", "--epochs", "2",
            "--max-minutes", "0.2", "--results", str(results),
            "--work-dir", str(tmp_path / "work"), "--no-progress"]
    assert amazon_loo.main(argv) == 0
    records = json.loads(results.read_text())
    assert other in records
    mine = [r for r in records if r["dataset"] == "amazon-Tiny"]
    assert {r["model"] for r in mine} == {"sasrec", "popularity"}
    metrics = {r["metric"] for r in mine if r["model"] == "sasrec"}
    assert {"ndcg_at_10", "hr_at_10", "train_seconds", "sequences_per_second", "peak_rss",
            "best_epoch"} <= metrics
    for r in mine:
        assert set(common.RECORD_KEYS) <= set(r)
        assert "amazon_loo" in r["command"] and r["hardware"]["usable_cores"] >= 1
    by = {(r["model"], r["metric"]): r["value"] for r in mine}
    assert 0.0 <= by[("sasrec", "ndcg_at_10")] <= by[("sasrec", "hr_at_10")] <= 1.0
    assert by[("sasrec", "peak_rss")] > 0 and by[("sasrec", "sequences_per_second")] > 0
    assert by[("popularity", "best_epoch")] == 0
    # A second run of one model replaces only that model's records.
    argv2 = [a if a != "sasrec,popularity" else "popularity" for a in argv]
    assert amazon_loo.main(argv2) == 0
    again = json.loads(results.read_text())
    assert len(again) == len(records)
    # A run with --model-config is a variant: a row of its own, the recipe's row kept.
    argv3 = [a if a != "sasrec,popularity" else "sasrec" for a in argv] + ["--model-config", "dropout=0.1"]
    assert amazon_loo.main(argv3) == 0
    variants = json.loads(results.read_text())
    assert {r["model"] for r in variants if r["dataset"] == "amazon-Tiny"} == {
        "sasrec", "popularity", "sasrec[dropout=0.1]"}
    assert [r for r in variants if r["model"] == "sasrec"] == [r for r in again if r["model"] == "sasrec"]
    text = report_docs.render_section("amazon_loo", variants, tmp_path)
    assert "| Tiny | sasrec |" in text
    assert "| Tiny | sasrec[dropout=0.1] |" in text
    assert "python -m benchmarks.amazon_loo" in text


def test_benchmark_model_config_overrides_are_typed_and_checked():
    _benchmarks_importable()
    from benchmarks import amazon_loo

    assert amazon_loo.parse_model_config(["dropout=0.5", "n_heads=2", "norm=pre"]) == {
        "dropout": 0.5, "n_heads": 2, "norm": "pre"}
    with pytest.raises(SystemExit, match="key=value"):
        amazon_loo.parse_model_config(["dropout"])
    # Keys sorted, so the same overrides in another order name the same row.
    assert amazon_loo.variant_label("sasrec", {"dropout": 0.5, "d_model": 128}) == "sasrec[d_model=128,dropout=0.5]"
    assert amazon_loo.variant_label("sasrec", {}) == "sasrec"
    assert amazon_loo.base_model("sasrec[d_model=128,dropout=0.5]") == "sasrec"


def test_benchmark_table_says_when_a_neural_model_has_no_clear_margin():
    _benchmarks_importable()
    from benchmarks import report_docs

    rows = {"popularity": {"ndcg_at_10": 0.005}, "covisitation": {"ndcg_at_10": 0.050},
            "sasrec": {"ndcg_at_10": 0.060}, "hstu": {"ndcg_at_10": 0.052}, "gru4rec": {"ndcg_at_10": 0.02}}
    assert report_docs.margin_verdict(rows, "sasrec") == "yes: +20% vs covisitation"
    assert report_docs.margin_verdict(rows, "hstu") == "no: only +4% vs covisitation"
    assert report_docs.margin_verdict(rows, "gru4rec") == "no: -60% vs covisitation"
    assert report_docs.margin_verdict(rows, "covisitation") == ""
    only_pop = {"popularity": {"ndcg_at_10": 0.005}, "sasrec": {"ndcg_at_10": 0.03}}
    assert report_docs.margin_verdict(only_pop, "sasrec").endswith("(covisitation not measured)")


def test_gpu_runs_merged_from_another_machine_get_their_own_section(tmp_path):
    _benchmarks_importable()
    from benchmarks import amazon_loo, common, report_docs

    def records(model: str, hardware: dict, **figures) -> list[dict]:
        return [common.record(metric, value, "x", dataset="amazon-Tiny", model=model, baseline=None,
                              command="c", hardware=hardware, date="2026-11-24") for metric, value in figures.items()]

    main_file = tmp_path / "amazon_loo.json"
    main_file.write_text(json.dumps(
        records("sasrec", {"usable_cores": 2}, ndcg_at_10=0.05, sequences_per_second=100.0, train_seconds=1000.0)
        + records("covisitation", {"usable_cores": 2}, ndcg_at_10=0.04)))
    came_back = tmp_path / "device" / "amazon_loo_gpu.json"
    came_back.parent.mkdir()
    gpu = {"usable_cores": 16, "gpu": "NVIDIA H200"}
    came_back.write_text(json.dumps(records("sasrec", gpu, ndcg_at_10=0.052, sequences_per_second=2000.0,
                                            train_seconds=50.0, seconds_to_best_epoch=30.0)))
    results = tmp_path / "amazon_loo_gpu.json"

    argv = ["--results", str(results), "--merge", str(came_back)]
    assert amazon_loo.main(argv) == 0
    assert amazon_loo.main(argv) == 0  # merging again replaces, never duplicates
    assert json.loads(results.read_text()) == json.loads(came_back.read_text())
    docs = "<!-- BEGIN benchmark: amazon_loo_gpu -->\n<!-- END benchmark: amazon_loo_gpu -->\n"
    text, done = report_docs.render_docs(docs, tmp_path)  # amazon_loo.json there: no markers, not rendered
    assert done == ["amazon_loo_gpu"]
    assert "gpu NVIDIA H200" in text
    # Set against the main table's run: 20x the throughput in 0.05x the time, and the margin
    # counts the main table's (CPU-only) co-visitation.
    assert "| Tiny | sasrec | 2000 | 100 | 20.00x | 50 | 1000 | 0.05x | 30 | 0.0520 | 0.0500 |" in text
    assert "yes: +30% vs covisitation (popularity not measured)" in text


def test_seconds_to_best_epoch_reads_the_kept_epoch():
    _benchmarks_importable()
    from benchmarks import amazon_loo

    history = [{"epoch": 1, "seconds": 10.0}, {"epoch": 2, "seconds": 21.0}, {"epoch": 3, "seconds": 30.5}]
    assert amazon_loo.seconds_to_best_epoch(history, 2) == 21.0
    assert amazon_loo.seconds_to_best_epoch([], 0) is None  # a model with nothing to train


def test_seed_summary_pools_this_runs_seeds_with_the_earlier_ones_without_counting_twice():
    from benchmarks import seed_rows

    def records(model, ndcg, hr):
        return [{"dataset": "amazon-Beauty", "model": model, "metric": m, "value": v}
                for m, v in (("ndcg_at_10", ndcg), ("hr_at_10", hr))]

    earlier = records("hybrid[seed=42]", 0.060, 0.090) + records("hybrid[seed=43]", 0.050, 0.080) + records(
        "hybrid[seed=44]", 0.070, 0.100) + records("sasrec[seed=42]", 0.01, 0.02)
    fresh = [{"model": "hybrid[seed=43]", "ndcg_at_10": 0.064, "hr_at_10": 0.094}]  # replaces the earlier 43
    (summary,) = seed_rows.seed_summaries(fresh, earlier, "amazon-Beauty")
    assert summary["model"] == "hybrid" and summary["n_seeds"] == 3
    assert summary["ndcg_at_10"] == pytest.approx((0.060 + 0.064 + 0.070) / 3)
    assert (summary["ndcg_at_10_seed_min"], summary["ndcg_at_10_seed_max"]) == (0.060, 0.070)
    assert summary["hr_at_10_seed_min"] == 0.090
    assert seed_rows.split_seed_label("sasrec[d_model=128,seed=7]") == ("sasrec[d_model=128]", 7)
    assert seed_rows.seed_label("sasrec[d_model=128]", 7) == "sasrec[d_model=128,seed=7]"


def test_merging_per_seed_result_files_writes_the_seed_mean_rows(tmp_path):
    from benchmarks import amazon_loo, common

    def seed_file(seed, ndcg):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps([common.record(metric, value, "ratio", dataset="amazon-Beauty",
                                                  model=f"hybrid[seed={seed}]", baseline=None, command="c",
                                                  hardware={"cpu_model": "x"}, date=f"2026-12-0{seed - 40}")
                                    for metric, value in (("ndcg_at_10", ndcg), ("hr_at_10", 2 * ndcg))]))
        return path

    results = tmp_path / "amazon_loo.json"
    files = [seed_file(42, 0.058), seed_file(43, 0.062), seed_file(44, 0.060)]
    assert amazon_loo.main(["--results", str(results), *(a for f in files for a in ("--merge", str(f)))]) == 0
    rows = common.by_key(common.read_results(results), "dataset", "model")
    mean = rows["amazon-Beauty", "hybrid"]
    assert mean["ndcg_at_10"] == pytest.approx(0.060) and mean["n_seeds"] == 3
    assert (mean["ndcg_at_10_seed_min"], mean["ndcg_at_10_seed_max"]) == (0.058, 0.062)
    assert rows["amazon-Beauty", "hybrid[seed=43]"]["ndcg_at_10"] == 0.062
