"""The ``recsys`` command line: every command's help shows an example, user errors are one line
with exit status 2 (the traceback only with --debug), the feature store answers through it, and
the console script is installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from core.errors import UserError
from core.settings import Settings
from pipeline.cli import app
from tests.serving.conftest import build_warehouse, free_port, materialize_features, ring_user_sequences

RECSYS = Path(sys.executable).parent / "recsys"


def invoke(args: list[str], home: Path, **env: str | None) -> Result:
    return CliRunner().invoke(app, args, env={"RECSYS_HOME": str(home), "RECSYS_DEBUG": None, **env})


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_issue_s_commands_exist() -> None:
    names = {" ".join(path) for path in COMMANDS}
    for wanted in ("demo", "import", "ingest", "sessions", "check", "features materialize", "train", "evaluate",
                   "promote", "rollback", "serve", "report", "airflow ui", "airflow run",
                   "features get", "features serve"):
        assert wanted in names, f"recsys {wanted} is missing"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "recsys")
def test_every_help_shows_an_example(path: tuple[str, ...], tmp_path: Path) -> None:
    result = invoke([*path, "--help"], tmp_path)
    assert result.exit_code == 0, result.output
    _, _, examples = result.output.partition("Example:")
    lines = [line.strip() for line in examples.strip().splitlines()]
    assert lines and all(line.startswith(("recsys ", "RECSYS_", "eval ")) for line in lines[:1]), result.output
    # The example runs this very command (a group's example one of its own).
    assert " ".join(("recsys", *path)) in examples, examples


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_train_on_an_empty_home_is_one_line_with_the_fix(tmp_path: Path) -> None:
    line = _one_error_line(invoke(["train", "--date", "2026-11-07"], tmp_path))
    assert "no warehouse" in line and "(fix: " in line


def test_ingest_without_a_raw_folder_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(invoke(["ingest", "--date", "2026-11-07"], tmp_path))
    assert str(tmp_path / "raw" / "2026-11-07") in line


def test_a_missing_candidate_file_says_how_to_make_one(tmp_path: Path) -> None:
    line = _one_error_line(invoke(["evaluate", "--date", "2026-11-07", "--candidate", str(tmp_path / "c.json")],
                                  tmp_path))
    assert "recsys train --date 2026-11-07 > candidate.json" in line


def test_features_get_before_the_store_exists_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(invoke(["features", "get", "--user", "u001"], tmp_path))
    assert "recsys features materialize" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "RECSYS_HOME": str(tmp_path)}
    env.pop("RECSYS_DEBUG", None)
    done = subprocess.run([str(RECSYS), "--debug", "ingest", "--date", "2026-11-07"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "MissingArrivalDay: raw folder of the arrival day not found" in done.stderr
    # The setting does the same as the flag (here in process: the exception leaves the app).
    result = invoke(["ingest", "--date", "2026-11-07"], tmp_path, RECSYS_DEBUG="1")
    assert isinstance(result.exception, UserError)


def test_a_file_that_is_not_a_decision_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"model_version": "1", "metrics": {}, "baseline_metrics": {}}))
    result = invoke(["promote", "--decision", str(tmp_path / "c.json")], tmp_path)
    # Not a decision: a user error. A decision file with the right keys goes through to MLflow.
    assert _one_error_line(result).startswith("error: ")


@pytest.fixture(scope="module")
def materialized_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("recsys-cli") / "home"
    settings = Settings(home=home, max_sequence_length=20)
    build_warehouse(settings)
    materialize_features(settings)
    return home


def expected_recent_items(user_id: str, k: int = 20) -> list[str]:
    items = {u: i for u, i, _ in ring_user_sequences()}[user_id]
    return items[-k:]


def test_features_get_prints_the_online_features(materialized_home: Path) -> None:
    result = invoke(["features", "get", "--user", "u001", "--user", "nobody"], materialized_home)
    assert result.exit_code == 0, result.output
    features = json.loads(result.stdout)
    assert features["nobody"] is None
    assert features["u001"]["recent_item_ids"] == expected_recent_items("u001")
    assert features["u001"]["n_events_total"] == len({u: i for u, i, _ in ring_user_sequences()}["u001"])


def test_features_serve_runs_feast_s_feature_server(materialized_home: Path) -> None:
    port = free_port()
    env = {**os.environ, "RECSYS_HOME": str(materialized_home)}
    server = subprocess.Popen([str(RECSYS), "features", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = {"feature_service": "recommendation_features", "entities": {"user_id": ["u001"]}}
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json=body, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the feature server did not answer"
                time.sleep(0.5)
        assert response.status_code == 200, response.text
        answer = response.json()
        names = answer["metadata"]["feature_names"]
        recent = answer["results"][names.index("recent_item_ids")]["values"][0]
        assert recent == expected_recent_items("u001")
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its gunicorn workers: our own group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    (script,) = entry_points(group="console_scripts", name="recsys")
    assert script.value == "pipeline.cli:main"
    done = subprocess.run([str(RECSYS), "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RECSYS_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "Usage: recsys" in done.stdout and "features" in done.stdout and "Example: recsys demo" in done.stdout


def test_train_evaluate_promote_chain_through_files(materialized_home: Path, tmp_path: Path) -> None:
    """The nightly chain by hand: each command's JSON result is the next one's input file."""
    env = {"RECSYS_MAX_SEQUENCE_LENGTH": "20", "RECSYS_MIN_EVAL_EXAMPLES": "10"}
    trained = invoke(["train", "--date", "2026-11-10", "--model", "covisitation", "--epochs", "1"],
                     materialized_home, **env)
    assert trained.exit_code == 0, trained.output
    candidate = json.loads(trained.stdout)
    (tmp_path / "candidate.json").write_text(trained.stdout)
    evaluated = invoke(["evaluate", "--date", "2026-11-10", "--candidate", str(tmp_path / "candidate.json")],
                       materialized_home, **env)
    assert evaluated.exit_code == 0, evaluated.output
    decision = json.loads(evaluated.stdout)
    assert decision["candidate_version"] == str(candidate["model_version"])
    # No quality gate ran for the date: promotion is refused, by a named check.
    assert not decision["promote"]
    assert [c["passed"] for c in decision["checks"] if c["name"] == "quality_gate_passed"] == [False]
    (tmp_path / "decision.json").write_text(evaluated.stdout)
    promoted = invoke(["promote", "--decision", str(tmp_path / "decision.json")], materialized_home, **env)
    assert promoted.exit_code == 0, promoted.output
    record = json.loads(promoted.stdout)
    assert record["promote"] is False and "quality_gate_passed" in record["failed_checks"]
    assert record["champion_version_after"] is None
    assert json.loads((materialized_home / "decisions" / "2026-11-10.json").read_text())["candidate_version"] == \
        str(candidate["model_version"])


def test_import_writes_arrival_days_and_names_the_next_commands(tmp_path: Path) -> None:
    source = tmp_path / "ratings.csv"
    source.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n1,11,3.0,1700003600\n"
                      "2,10,5.0,1700090000\n")
    result = invoke(["import", "movielens", str(source), "--out", str(tmp_path / "raw")], tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["events_written"] == 3 and summary["arrival_days"] == ["2023-11-14", "2023-11-15"]
    assert (tmp_path / "raw" / "2023-11-14").is_dir()
    assert "next: recsys ingest --date 2023-11-14 --to 2023-11-15" in result.stderr
    source.write_text("garbage\n")
    line = _one_error_line(invoke(["import", "movielens", str(source), "--out", str(tmp_path / "raw")], tmp_path))
    assert "not a movielens file" in line and "(fix: " in line


def test_serve_refuses_an_exposed_host_without_tokens(tmp_path: Path) -> None:
    result = invoke(["serve", "--host", "0.0.0.0"], tmp_path, RECSYS_EVENTS_TOKEN=None, RECSYS_ADMIN_TOKEN=None)
    line = _one_error_line(result)
    assert "refusing to start" in line and "RECSYS_ADMIN_TOKEN" in line


def test_debug_is_taken_after_the_command_too() -> None:
    from pipeline.cli import hoist_debug

    assert hoist_debug(["ingest", "--date", "2026-11-07", "--debug"]) == ["--debug", "ingest", "--date", "2026-11-07"]
    assert hoist_debug(["ingest", "--date", "2026-11-07"]) == ["ingest", "--date", "2026-11-07"]
    assert hoist_debug(["airflow", "run", "--", "--debug"]) == ["airflow", "run", "--", "--debug"]
