"""Rollback through a real MLflow registry, and a serving process following the champion alias:
a rollback is followed without a restart, a corrupt version never becomes live."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from registry.promotion import apply_decision, decide_promotion

from serving.smoke import serves_in_api_path
from registry.versions import champion_version
from registry.rollback import RollbackRefused, main as rollback_cli, rollback
from tests.reliability.serving_registry import wait_for as poll_until
from training.tracking import CHECKPOINT_FILE, mlflow_client, train_and_log


# v1 must beat popularity; v2 must beat v1 for real on night 2's window.
EPOCHS_V1, EPOCHS_V2 = 2, 8


def corrupt_registered_artifact(settings, version: str) -> None:
    source = mlflow_client(settings).get_model_version_download_uri(settings.registered_model_name, version)
    path = Path(urlparse(source).path) / CHECKPOINT_FILE
    assert path.is_file(), path
    path.write_bytes(b"\x00 not a checkpoint")


# The shared poller, with this module's hang guard.
wait_for = functools.partial(poll_until, timeout_s=10.0)


@pytest.fixture
def two_champions(settings, synth, tiny_sasrec):
    """v1 promoted on night 1, v2 (trained longer, a real win) promoted on night 2: v2 serves,
    v1 is the previous champion."""
    settings = settings.replace(champion_poll_seconds=0.1)
    synth.write(settings.warehouse_path, synth.ring_rows())
    for day, epochs in ((synth.DAY1, EPOCHS_V1), (synth.DAY2, EPOCHS_V2)):
        candidate = train_and_log(settings, day, "sasrec", epochs=epochs, lr=3e-3, model_config=tiny_sasrec)
        decision = decide_promotion(settings, day, candidate, gate_passed=True, serving_check=serves_in_api_path)
        assert decision.promote, decision.checks
        apply_decision(settings, decision)
    assert champion_version(settings) == "2"
    return settings


@pytest.fixture
def following(two_champions):
    from serving.recommendation_service import RecommendationService
    from serving.champion_poller import ChampionFollower

    service = RecommendationService(two_champions)
    follower = ChampionFollower(service, two_champions.champion_poll_seconds).start()
    yield service
    follower.stop()
    service.close()


def test_rollback_moves_the_alias_and_serving_follows(two_champions, following):
    settings, service = two_champions, following
    assert service.model_version == "2"
    record = rollback(settings, 1, reason="v2 hurts conversions")
    assert record["done"] and record["champion_version_before"] == "2"
    assert record["champion_version_after"] == champion_version(settings) == "1"
    saved = json.loads(Path(record["record_path"]).read_text())
    assert saved["action"] == "rollback" and saved["note"] == "v2 hurts conversions"
    assert Path(record["record_path"]).parent == settings.decisions_dir
    assert wait_for(lambda: service.model_version == "1"), service.model_version
    text = service.metrics.render().decode()
    assert 'recsys_model_info{model_name="sasrec",model_version="1"} 1.0' in text
    assert 'model_version="2"' not in text
    tags = mlflow_client(settings).get_model_version(settings.registered_model_name, "1").tags
    assert tags["decision"] == "rolled_back_to"


def test_missing_or_corrupt_versions_are_refused_and_never_served(two_champions, following, synth):
    settings, service = two_champions, following
    with pytest.raises(RollbackRefused, match="does not exist"):
        rollback(settings, 99)
    with pytest.raises(RollbackRefused, match="already is the champion"):
        rollback(settings, 2)

    # A third version whose artifact is damaged after registration.
    bad = train_and_log(settings, synth.DAY2, "popularity", epochs=1)
    corrupt_registered_artifact(settings, bad["model_version"])
    with pytest.raises(RollbackRefused, match="cannot be loaded") as refused:
        rollback(settings, bad["model_version"])
    assert refused.value.record["done"] is False and champion_version(settings) == "2"
    assert json.loads(Path(refused.value.record["record_path"]).read_text())["done"] is False

    # Even when the alias is moved by hand past every check, serving refuses to load it.
    mlflow_client(settings).set_registered_model_alias(
        settings.registered_model_name, settings.champion_alias, bad["model_version"])
    assert wait_for(lambda: bad["model_version"] in service.refused)
    assert service.model_version == "2"
    assert service.recommend("user_0001", 5).model_version == "2"
    # The poller thread records the refusal and then counts it: wait for both, not just the first.
    assert wait_for(lambda: 'recsys_model_reloads_total{outcome="refused"} 1.0'
                    in service.metrics.render().decode()), service.metrics.render().decode()


def test_cli_to_previous(two_champions, capsys, monkeypatch, synth):
    settings = two_champions
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    monkeypatch.setenv("RECSYS_MAX_SEQUENCE_LENGTH", str(settings.max_sequence_length))
    assert rollback_cli(["--to-previous"]) == 0
    assert json.loads(capsys.readouterr().out)["champion_version_after"] == "1"
    assert rollback_cli(["--to-previous"]) == 1  # nothing earlier than v1 was ever champion
    assert "no earlier version" in capsys.readouterr().err
    assert rollback_cli(["--version", "2"]) == 0 and champion_version(settings) == "2"
    capsys.readouterr()

    # A version that was never decided: refused in one line, served only with --force.
    never = train_and_log(settings, synth.DAY2, "popularity", epochs=1)["model_version"]
    assert rollback_cli(["--version", never]) == 1 and champion_version(settings) == "2"
    assert "rollback refused: " in capsys.readouterr().err
    assert rollback_cli(["--version", never, "--force", "--reason", "incident"]) == 0
    out = capsys.readouterr()
    assert "WARNING: forced rollback" in out.err and json.loads(out.out)["forced"] is True
    assert champion_version(settings) == never


def test_rollback_dag_is_manual_with_a_version_param():
    from airflow.dag_processing.dagbag import DagBag

    from core.settings import REPO_ROOT

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "rollback_champion.py")).dags["rollback_champion"]
    assert dag.schedule is None or dag.timetable.summary in ("None", None)
    assert "version" in dag.params and dag.catchup is False
    assert [t.task_id for t in dag.tasks] == ["rollback"]
