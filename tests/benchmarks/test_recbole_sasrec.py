"""The RecBole reference of the Amazon leave-one-out benchmark: the S3Rec -> RecBole atomic file
conversion, the configuration (the same protocol and hyperparameters as our SASRec), and the
benchmark's handling of the reference (records, ratios, docs, a missing or failing RecBole).

RecBole is not a project dependency: ``benchmarks/recbole_sasrec.py`` runs under a throwaway
interpreter. Its pure functions are imported here by path; the one part that needs RecBole itself
skips when it cannot be imported (as in the project's environment). The benchmark's subprocess is
exercised with a fake interpreter that writes a canned result."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import stat
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import amazon_loo as bench  # noqa: E402
from benchmarks import common, report_docs  # noqa: E402

SCRIPT = REPO_ROOT / "benchmarks" / "recbole_sasrec.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("recbole_sasrec_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()

# Users with 3..20 items, string and numeric ids, a repeated item (u3), item 5 only as a test
# target; 32 items in all (RecBole's top-20 metrics need more than 20).
FIXTURE = {
    "1": ["10", "11", "12", "13"],
    "2": ["11", "12", "13", "14", "15", "16", "17", "18"],
    "u3": ["20", "21", "20"],
    "4": ["10", "12", "14", "16", "5"],
    "5": [str(i) for i in range(30, 50)],
}


def _write_fixture(path: Path) -> Path:
    lines = [f"{user} {' '.join(items)}" for user, items in FIXTURE.items()]
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    return path


# ---- the conversion ----


def test_conversion_keeps_every_interaction_in_the_file_order(tmp_path: Path) -> None:
    sequences = script.read_sequences(_write_fixture(tmp_path / "Beauty.txt"))
    assert sequences == list(FIXTURE.items())  # the blank line is skipped

    target = script.write_atomic(sequences, tmp_path / "data", "loo")
    assert target == tmp_path / "data" / "loo" / "loo.inter"
    header, *rows = target.read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["user_id:token", "item_id:token", "timestamp:float"]
    assert len(rows) == sum(len(items) for items in FIXTURE.values())

    # Regrouping by user and sorting by timestamp (RecBole's TO order) gives the file back.
    regrouped: dict[str, list[tuple[float, str]]] = {}
    for row in rows:
        user, item, timestamp = row.split("\t")
        regrouped.setdefault(user, []).append((float(timestamp), item))
    assert {u: [i for _, i in sorted(events)] for u, events in regrouped.items()} == FIXTURE
    for events in regrouped.values():  # distinct times within a user: no tie for a sort to break
        assert [t for t, _ in events] == list(range(len(events)))


def test_conversion_rejects_what_recbole_would_silently_merge(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than one line"):
        script.write_atomic([("1", ["10", "11", "12"]), ("1", ["13", "14", "15"])], tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 10 11 12\n2\n")
    with pytest.raises(ValueError, match=":2: a user without items"):
        script.read_sequences(bad)


# ---- the configuration: the benchmark's protocol and SASRec hyperparameters ----


def test_config_follows_the_benchmarks_protocol(tmp_path: Path) -> None:
    config = script.recbole_config(data_path=tmp_path / "data", work_dir=tmp_path / "work", epochs=7, seed=3)
    assert config["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                   "mode": "full"}
    assert config["MAX_ITEM_LIST_LENGTH"] == bench.MAX_LEN == 50
    assert config["loss_type"] == "CE" and config["train_neg_sample_args"] is None
    assert config["metrics"] == ["NDCG", "Hit"] and config["topk"] == [10, 20]
    assert config["valid_metric"] == "NDCG@10" and config["valid_metric_bigger"] is True
    assert config["eval_step"] == 1
    # nothing filtered: the file is already 5-core
    assert config["user_inter_num_interval"] == config["item_inter_num_interval"] == "[0,inf)"
    assert config["rm_dup_inter"] is None and config["val_interval"] is None
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    # where things go
    assert config["data_path"] == str(tmp_path / "data")
    assert Path(config["checkpoint_dir"]).is_relative_to(tmp_path / "work")
    assert config["epochs"] == 7 and config["seed"] == 3 and config["use_gpu"] is False
    assert script.recbole_config(data_path=tmp_path, work_dir=tmp_path, use_gpu=True)["use_gpu"] is True


def test_config_mirrors_our_sasrec_hyperparameters(tmp_path: Path) -> None:
    from training.config import TrainConfig

    model_name, model_config, train = bench.MODELS["sasrec"]
    config = script.recbole_config(data_path=tmp_path, work_dir=tmp_path)
    assert model_name == "sasrec"
    assert config["hidden_size"] == model_config["d_model"]
    assert config["inner_size"] == 4 * model_config["d_model"]  # our FeedForward's width
    assert config["n_layers"] == model_config["n_layers"] and config["n_heads"] == model_config["n_heads"]
    assert config["hidden_dropout_prob"] == config["attn_dropout_prob"] == model_config["dropout"]
    assert config["hidden_act"] == "gelu"
    assert config["learner"] == "adamw"
    assert config["learning_rate"] == train["lr"] and config["weight_decay"] == train["weight_decay"]
    assert config["train_batch_size"] == train["batch_size"]
    assert config["epochs"] == script.DEFAULT_EPOCHS == train["epochs"]
    assert config["clip_grad_norm"] == {"max_norm": TrainConfig().grad_clip}
    # RecBole stops after stopping_step + 1 validations without improvement, ours after `patience`.
    assert config["stopping_step"] + 1 == train["patience"]


def test_script_imports_only_the_standard_library_recbole_and_torch() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    outside = {name for name in imported if name not in sys.stdlib_module_names} - {"__future__"}
    assert outside == {"recbole", "torch", "numpy"}  # numpy: only to patch RecBole for numpy 2


def test_summary_maps_recboles_metric_names() -> None:
    out = script.summary(
        test={"ndcg@10": 0.1, "hit@10": 0.2, "ndcg@20": 0.15, "hit@20": 0.3}, best_valid=0.12, train_seconds=5.0,
        data_seconds=1.0, epochs_run=3, best_epoch=2, stopped_by="time", version="1.2.1", torch_version="2",
        device="cpu", n_users=4, n_items=13, n_interactions=20, n_examples=16, config=script.recbole_config(
            data_path=Path("d"), work_dir=Path("w")),
    )
    assert (out["ndcg_at_10"], out["hr_at_10"], out["ndcg_at_20"], out["hr_at_20"]) == (0.1, 0.2, 0.15, 0.3)
    assert out["val_ndcg_at_10"] == 0.12 and out["best_epoch"] == 2 and out["epochs_run"] == 3
    assert {metric for metric, _ in bench.RECBOLE_FIGURES} - {"peak_rss"} <= set(out)
    json.dumps(out)  # JSON as it is


def test_recbole_run_on_the_fixture(tmp_path: Path) -> None:
    """The script end to end (one epoch); only where RecBole imports, i.e. not in the project's venv."""
    pytest.importorskip("recbole", reason="RecBole is not installed here (it is not a project dependency)")
    out = tmp_path / "result.json"
    assert script.main(["--file", str(_write_fixture(tmp_path / "Beauty.txt")), "--work-dir", str(tmp_path / "w"),
                        "--epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_users"] == len(FIXTURE) and result["epochs_run"] == 1
    assert result["n_interactions"] == sum(len(v) for v in FIXTURE.values())
    assert 0.0 <= result["ndcg_at_10"] <= result["hr_at_10"] <= 1.0


# ---- the benchmark's side: the subprocess, records, ratios, docs ----

CANNED = {"ndcg_at_10": 0.05, "hr_at_10": 0.1, "ndcg_at_20": 0.06, "hr_at_20": 0.15, "val_ndcg_at_10": 0.07,
          "train_seconds": 40.0, "best_epoch": 3, "epochs_run": 4, "stopped_by": "epochs",
          "recbole_version": "9.9.9", "torch_version": "0.0-fake"}


def _fake_python(tmp_path: Path, *, fail: bool = False) -> Path:
    """An 'interpreter' that imports recbole (exit 0 on ``-c``), logs its arguments and writes
    ``CANNED`` to ``--out`` (or fails)."""
    fake = tmp_path / "fake-python"
    body = "echo 'Traceback: boom' >&2; exit 3" if fail else (
        "out=''; while [ $# -gt 0 ]; do [ \"$1\" = --out ] && out=\"$2\"; shift; done\n"
        f"cat > \"$out\" <<'EOF'\n{json.dumps(CANNED)}\nEOF")
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = -c ] && exit 0\necho \"$@\" > \"{tmp_path / 'args.txt'}\"\n{body}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def test_missing_interpreter_is_reported(tmp_path: Path) -> None:
    assert "no executable interpreter" in bench.recbole_problem(tmp_path / "nope" / "python")
    assert bench.run_recbole(tmp_path / "nope", tmp_path / "f.txt", epochs=1, max_minutes=None, device="cpu",
                             threads=None, seed=1, work_dir=tmp_path) is None
    # the project's own interpreter has no RecBole: a clear reason, not a crash
    try:
        import recbole  # noqa: F401
    except ImportError:
        assert "cannot import recbole" in bench.recbole_problem(Path(sys.executable))


def test_recbole_command_passes_the_runs_settings(tmp_path: Path) -> None:
    command = bench.recbole_command(Path("/x/python"), tmp_path / "B.txt", work_dir=tmp_path / "w",
                                    out=tmp_path / "o.json", epochs=5, max_minutes=2.5, device="cuda:0",
                                    threads=1, seed=9)
    assert command[:2] == ["/x/python", str(bench.RECBOLE_SCRIPT)] and bench.RECBOLE_SCRIPT.exists()
    flags = dict(zip(command[2::2], command[3::2]))
    assert flags == {"--file": str((tmp_path / "B.txt").resolve()), "--work-dir": str(tmp_path / "w"),
                     "--out": str(tmp_path / "o.json"), "--epochs": "5", "--device": "cuda", "--seed": "9",
                     "--max-minutes": "2.5", "--threads": "1"}
    auto = bench.recbole_command(Path("p"), tmp_path / "B.txt", work_dir=tmp_path, out=tmp_path / "o",
                                 epochs=1, max_minutes=None, device="auto", threads=None, seed=1)
    assert "--max-minutes" not in auto and "--threads" not in auto and auto[auto.index("--device") + 1] == "auto"


def test_ratios_are_ours_over_recboles_for_sasrec_variants_only() -> None:
    outcomes = [{"model": "sasrec", "train_seconds": 10.0, "ndcg_at_10": 0.06},
                {"model": "sasrec-sampled", "train_seconds": 80.0, "ndcg_at_10": 0.04},
                {"model": "popularity", "train_seconds": 1.0, "ndcg_at_10": 0.01}]
    ratios = bench.recbole_ratios(outcomes, {"train_seconds": 40.0, "ndcg_at_10": 0.05})
    got = {(m, k): v for m, k, v in ratios}
    assert set(got) == {(m, k) for m in ("sasrec", "sasrec-sampled") for k, _ in bench.RECBOLE_RATIOS}
    assert math.isclose(got["sasrec", "time_ratio_vs_recbole"], 0.25)
    assert math.isclose(got["sasrec", "ndcg_at_10_ratio_vs_recbole"], 1.2)
    assert math.isclose(got["sasrec-sampled", "time_ratio_vs_recbole"], 2.0)
    zero = bench.recbole_ratios(outcomes[:1], {"train_seconds": 40.0, "ndcg_at_10": 0.0})
    assert dict(((m, k), v) for m, k, v in zero)["sasrec", "ndcg_at_10_ratio_vs_recbole"] is None


def _fixture_run(tmp_path: Path, python: Path, models: str) -> tuple[int, list[dict], str, Path]:
    results = tmp_path / "results.json"
    argv = ["--file", str(_write_fixture(tmp_path / "Beauty.txt")), "--dataset", "Beauty", "--models", models,
            "--epochs", "1", "--max-minutes", "3", "--device", "cpu", "--recbole-python", str(python),
            "--results", str(results), "--work-dir", str(tmp_path / "work"), "--no-progress"]
    code = bench.main(argv)
    records = json.loads(results.read_text())
    return code, records, report_docs.render_section("amazon_loo", records, tmp_path), tmp_path / "args.txt"


def test_benchmark_records_recbole_and_the_ratios(tmp_path: Path) -> None:
    code, records, docs, args = _fixture_run(tmp_path, _fake_python(tmp_path), "sasrec,popularity")
    assert code == 0
    for item in records:
        assert set(item) == set(common.RECORD_KEYS)
    by = {(r["model"], r["metric"]): r for r in records}
    theirs = {metric for (model, metric) in by if model == bench.RECBOLE_MODEL}
    assert theirs == {metric for metric, _ in bench.RECBOLE_FIGURES}
    assert by[bench.RECBOLE_MODEL, "ndcg_at_10"]["value"] == CANNED["ndcg_at_10"]
    assert by[bench.RECBOLE_MODEL, "train_seconds"]["value"] == CANNED["train_seconds"]
    # measured on the subprocess (0 when the fake ends before the sampler's first look)
    assert by[bench.RECBOLE_MODEL, "peak_rss"]["value"] >= 0
    assert by[bench.RECBOLE_MODEL, "ndcg_at_10"]["hardware"]["recbole"] == "9.9.9"
    assert by[bench.RECBOLE_MODEL, "ndcg_at_10"]["dataset"] == "amazon-Beauty"

    time_ratio, ndcg_ratio = by["sasrec", "time_ratio_vs_recbole"], by["sasrec", "ndcg_at_10_ratio_vs_recbole"]
    assert time_ratio["baseline"] == ndcg_ratio["baseline"] == bench.RECBOLE_MODEL
    assert math.isclose(time_ratio["value"], by["sasrec", "train_seconds"]["value"] / 40.0, rel_tol=1e-3)
    assert math.isclose(ndcg_ratio["value"], by["sasrec", "ndcg_at_10"]["value"] / 0.05, abs_tol=1e-4)
    assert ("popularity", "time_ratio_vs_recbole") not in by

    passed = args.read_text().split()
    assert passed[passed.index("--epochs") + 1] == "1" and passed[passed.index("--max-minutes") + 1] == "3.0"
    assert passed[passed.index("--device") + 1] == "cpu"

    assert f"| Beauty | {bench.RECBOLE_MODEL} | 0.1000 | 0.0500 |" in docs
    assert "| dataset | model | baseline | train time ratio | NDCG@10 ratio | date |" in docs
    assert f"| Beauty | sasrec | {bench.RECBOLE_MODEL} | {time_ratio['value']:.3f} |" in docs


def test_a_failing_recbole_records_nothing_for_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, records, docs, _ = _fixture_run(tmp_path, _fake_python(tmp_path, fail=True), "popularity")
    assert code == 0
    assert {r["model"] for r in records} == {"popularity"}
    assert bench.RECBOLE_MODEL not in docs and "train time ratio" not in docs
    printed = capsys.readouterr().out
    assert "RecBole reference failed (exit 3)" in printed and "Traceback: boom" in printed
