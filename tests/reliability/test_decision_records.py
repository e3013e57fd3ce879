"""Only a passing decision makes a champion (issue 19): every promotion decision leaves a signed
record on the candidate version, written before the alias moves and never claiming a promotion
that did not happen; rollback needs a passing record or an explicit, recorded force.

Real MLflow registry (SQLite under tmp_path). Registry failures are real ones: a SQLite trigger
in MLflow's own database refuses the write. Popularity models (no training) where the model does
not matter."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.reliability.conftest import TINY_SASREC
from tests.training.conftest import DAY1


def train(settings, model="popularity", epochs=1):
    from training.tracking import train_and_log

    config = TINY_SASREC if model == "sasrec" else None
    return train_and_log(settings, DAY1, model, epochs=epochs, lr=3e-3, model_config=config)


def decide_and_apply(settings, candidate, gate_passed=True):
    from registry.promotion import apply_decision, decide_promotion
    from serving.smoke import serves_in_api_path

    return apply_decision(settings, decide_promotion(settings, DAY1, candidate, gate_passed=gate_passed, serving_check=serves_in_api_path))


def registry_refuses(settings, table: str, when: str = "1") -> None:
    """Make MLflow's SQLite store refuse inserts and updates of ``table`` rows matching ``when``."""
    with sqlite3.connect(urlparse(settings.mlflow_uri).path) as con:
        for event in ("INSERT", "UPDATE"):
            con.execute(f"CREATE TRIGGER refuse_{table}_{event.lower()} BEFORE {event} ON {table} "
                        f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'registry write refused'); END")


def record_of(settings, version):
    from registry.decision_record import read_record
    from training.tracking import mlflow_client

    return read_record(settings, mlflow_client(settings), version)


def checkpoint_digest(settings, version):
    from registry.decision_record import artifact_digest
    from registry.versions import download_registered_checkpoint

    return artifact_digest(download_registered_checkpoint(settings, version))


def test_a_promotion_leaves_a_signed_passing_record_for_the_evaluated_artifact(ring):
    from registry.decision_record import verify_servable
    from registry.versions import download_registered_checkpoint
    from training.tracking import mlflow_client

    candidate = train(ring)
    applied = decide_and_apply(ring, candidate)
    assert applied["promote"] is True
    record = record_of(ring, candidate["model_version"])
    assert record["action"] == "promotion" and record["passed"] is True and record["forced"] is False
    assert record["run_id"] == candidate["run_id"] and record["run_date"] == DAY1.isoformat()
    assert record["artifact_sha256"] == checkpoint_digest(ring, candidate["model_version"])
    assert {c["name"] for c in record["checks"]} >= {"beats_champion", "serves_in_api_path",
                                                     "artifact_unchanged_since_evaluation"}
    assert applied["decision_record"] == record
    client = mlflow_client(ring)
    verify_servable(ring, client, candidate["model_version"],
                    download_registered_checkpoint(ring, candidate["model_version"], client))


def test_a_reader_without_the_signing_key_is_told_so_and_creates_none(ring, tmp_path):
    """A serving process with another home and no configured key must say that the key is
    missing, not generate a fresh one that matches no record."""
    from registry.decision_record import DecisionRefused, verify_servable
    from registry.versions import download_registered_checkpoint
    from training.tracking import mlflow_client

    candidate = train(ring)
    assert decide_and_apply(ring, candidate)["promote"] is True
    reader = ring.replace(home=tmp_path / "api-home", mlflow_tracking_uri=ring.mlflow_uri)
    client = mlflow_client(reader)
    checkpoint = download_registered_checkpoint(reader, candidate["model_version"], client)
    with pytest.raises(DecisionRefused, match="no decision signing key.*RECSYS_DECISION_SIGNING_KEY"):
        verify_servable(reader, client, candidate["model_version"], checkpoint)
    assert not reader.secrets_dir.exists()


def test_a_rejected_candidate_gets_a_record_that_serving_refuses(ring):
    from registry.decision_record import DecisionRefused, verify_servable
    from registry.versions import download_registered_checkpoint
    from training.tracking import mlflow_client

    decide_and_apply(ring, train(ring))
    rejected = train(ring)  # the same night again: a tie, rejected
    assert decide_and_apply(ring, rejected)["promote"] is False
    record = record_of(ring, rejected["model_version"])
    assert record["passed"] is False and record["action"] == "promotion"
    assert {c["name"]: c["passed"] for c in record["checks"]}["beats_champion"] is False
    client = mlflow_client(ring)
    with pytest.raises(DecisionRefused, match="failed its decision"):
        verify_servable(ring, client, rejected["model_version"],
                        download_registered_checkpoint(ring, rejected["model_version"], client))


def test_alias_stays_when_the_record_cannot_be_written(ring):
    from registry.versions import champion_version

    candidate = train(ring)
    registry_refuses(ring, "model_version_tags", "NEW.key = 'decision_record'")
    with pytest.raises(Exception, match="registry write refused"):
        decide_and_apply(ring, candidate)
    # Serving never finds the alias on a version without a passing record.
    assert champion_version(ring) is None


def test_no_record_claims_a_promotion_when_the_alias_cannot_move(ring):
    from registry.versions import champion_version

    candidate = train(ring)
    registry_refuses(ring, "registered_model_aliases")
    with pytest.raises(Exception, match="registry write refused"):
        decide_and_apply(ring, candidate)
    assert champion_version(ring) is None
    record = record_of(ring, candidate["model_version"])
    assert record["passed"] is False
    assert {c["name"]: c["passed"] for c in record["checks"]}["alias_moved"] is False


def test_a_checkpoint_replaced_after_evaluation_is_not_promoted(ring):
    from registry.promotion import apply_decision, decide_promotion
    from serving.smoke import serves_in_api_path
    from registry.versions import champion_version, download_registered_checkpoint
    from training.tracking import CHECKPOINT_FILE, mlflow_client

    other = train(ring, "sasrec", epochs=1)
    candidate = train(ring)
    decision = decide_promotion(ring, DAY1, candidate, gate_passed=True, serving_check=serves_in_api_path)
    assert decision.promote, decision.checks
    # Between the evaluate and promote tasks, the registered file is swapped for another model.
    source = mlflow_client(ring).get_model_version_download_uri(ring.registered_model_name,
                                                                candidate["model_version"])
    shutil.copyfile(download_registered_checkpoint(ring, other["model_version"]),
                    Path(urlparse(source).path) / CHECKPOINT_FILE)
    applied = apply_decision(ring, decision)
    assert applied["promote"] is False
    assert applied["failed_checks"] == ["artifact_unchanged_since_evaluation"]
    assert champion_version(ring) is None
    assert record_of(ring, candidate["model_version"])["passed"] is False


@pytest.fixture
def champion_and_rejected(ring):
    """v1 promoted; v2 rejected (its night's quality gate failed): v2 never passed."""
    first, second = train(ring), train(ring)
    assert decide_and_apply(ring, first)["promote"] is True
    rejected = decide_and_apply(ring, second, gate_passed=False)
    assert rejected["promote"] is False and "quality_gate_passed" in rejected["failed_checks"]
    return ring, first["model_version"], second["model_version"]


def test_rollback_to_a_version_that_never_passed_is_refused_and_recorded(champion_and_rejected):
    from pipeline.stages import rollback_champion
    from registry.versions import champion_version
    from registry.rollback import RollbackRefused

    settings, champion, rejected = champion_and_rejected
    with pytest.raises(RollbackRefused, match="did not pass.*--force") as refused:
        rollback_champion(settings, rejected, reason="try the other one")
    assert "\n" not in str(refused.value)
    assert champion_version(settings) == champion
    saved = json.loads(Path(refused.value.record["record_path"]).read_text())
    assert saved["done"] is False and saved["force"] is False and "did not pass" in saved["reason"]
    assert record_of(settings, rejected)["action"] == "promotion"  # its record is untouched


def test_forced_rollback_is_recorded_as_forced_with_a_warning(champion_and_rejected, caplog):
    from registry.decision_record import verify_servable
    from registry.versions import champion_version, download_registered_checkpoint
    from registry.rollback import rollback
    from training.tracking import mlflow_client

    settings, _, rejected = champion_and_rejected
    with caplog.at_level(logging.WARNING, logger="registry.rollback"):
        result = rollback(settings, rejected, reason="incident 42", force=True)
    assert result["done"] and result["forced"] and "did not pass" in result["forced_because"]
    assert any("FORCED ROLLBACK" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert champion_version(settings) == rejected
    record = record_of(settings, rejected)
    assert record["action"] == "rollback" and record["forced"] is True and record["passed"] is False
    assert record["artifact_sha256"] == checkpoint_digest(settings, rejected)
    client = mlflow_client(settings)
    verify_servable(settings, client, rejected, download_registered_checkpoint(settings, rejected, client))
    assert json.loads(Path(result["record_path"]).read_text())["forced"] is True


def test_rollback_to_a_version_that_passed_writes_a_passing_rollback_record(ring):
    from registry.versions import champion_version
    from registry.rollback import rollback

    first = train(ring)
    assert decide_and_apply(ring, first)["promote"] is True
    better = train(ring, "sasrec", epochs=2)
    assert decide_and_apply(ring, better)["promote"] is True
    result = rollback(ring, first["model_version"], reason="v2 hurts conversions")
    assert result["done"] and result["forced"] is False
    assert champion_version(ring) == first["model_version"]
    record = record_of(ring, first["model_version"])
    assert record["action"] == "rollback" and record["passed"] is True and record["forced"] is False
    assert record["run_id"] == first["run_id"] and record["run_date"] == DAY1.isoformat()
    assert {c["name"] for c in record["checks"]} >= {"beats_champion", "serves_in_api_path"}


def test_rollback_to_a_version_whose_artifact_changed_is_refused(ring):
    from registry.versions import champion_version
    from registry.rollback import RollbackRefused, rollback
    from training.tracking import CHECKPOINT_FILE, mlflow_client

    first = train(ring)
    assert decide_and_apply(ring, first)["promote"] is True
    better = train(ring, "sasrec", epochs=2)
    assert decide_and_apply(ring, better)["promote"] is True
    # v1 passed once, but its registered file is now another (loadable) model.
    client = mlflow_client(ring)
    source = client.get_model_version_download_uri(ring.registered_model_name, first["model_version"])
    shutil.copyfile(better["checkpoint_path"], Path(urlparse(source).path) / CHECKPOINT_FILE)
    with pytest.raises(RollbackRefused, match="checkpoint changed since its decision"):
        rollback(ring, first["model_version"])
    assert champion_version(ring) == better["model_version"]
