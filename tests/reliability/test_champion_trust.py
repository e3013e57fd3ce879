"""The champion alias is not a lock: serving loads a version only when its signed decision record
says it passed (or a person forced it) for the very checkpoint downloaded.

Each test starts from v1 promoted the genuine way (a signed passing record, then the alias) and
served, then puts the alias on v2 in one way that must not make it live. Serving refuses v2, keeps
answering from v1, and says so in ``/health`` (``degraded``, ``champion_refused``) and
``/metrics`` (``recsys_champion_refused{version}``, ``recsys_model_reloads_total{outcome=
"refused"}``). Real MLflow (SQLite) and real checkpoints throughout."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.registry_fixtures import promote_for_test
from tests.reliability.serving_registry import (
    artifact_path, template_home, metric_lines, move_alias_by_hand, two_versions,
)


@pytest.fixture
def registry(tmp_path):
    settings = two_versions(tmp_path / "recsys", template_home())
    promote_for_test(settings, "1")
    return settings


@pytest.fixture
def client(registry):
    with TestClient(create_app(registry)) as client:
        assert client.app.state.service.model_version == "1"
        yield client


def write(settings, version: str, **fields) -> None:
    """A record for ``version``'s real checkpoint, signed with ``settings``' key."""
    from registry.decision_record import artifact_digest, build_record, write_record
    from training.tracking import mlflow_client

    fields.setdefault("artifact_sha256", artifact_digest(artifact_path(settings, version)))
    write_record(settings, mlflow_client(settings), build_record(settings, version, **fields))


def assert_refused(client, version: str, why: str, refusals: int = 1) -> None:
    service = client.app.state.service
    result = service.reload_champion()  # what the poller does
    assert result["model_version"] == "1" and result["changed"] is False, result
    assert service.model_version == "1"
    assert client.get("/recommendations/user_0001").json()["model_version"] == "1"
    health = client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "degraded" and body["model_version"] == "1"
    assert body["champion_refused"]["version"] == version and why in body["champion_refused"]["reason"]
    text = client.get("/metrics").text
    assert metric_lines(text, "recsys_champion_refused") == {f'{{version="{version}"}}': 1.0}
    assert metric_lines(text, "recsys_model_reloads_total")['{outcome="refused"}'] == refusals
    assert metric_lines(text, "recsys_serving_status")['{status="degraded"}'] == 1.0


def assert_serves(client, version: str) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == version, health
    assert health["champion_refused"] is None
    assert metric_lines(client.get("/metrics").text, "recsys_champion_refused") == {}


def test_alias_moved_to_a_version_without_a_record_is_refused(client, registry):
    move_alias_by_hand(registry, "2")
    assert_refused(client, "2", "has no decision record")
    # Promoted properly afterwards: the poller sees the record appear and loads it unasked.
    promote_for_test(registry, "2")
    assert client.app.state.service.reload_champion()["model_version"] == "2"
    assert_serves(client, "2")


def test_alias_moved_to_a_version_that_failed_its_checks_is_refused_unless_forced(client, registry):
    write(registry, "2", action="promotion", passed=False,
          checks=[{"name": "beats_popularity", "passed": False}])
    move_alias_by_hand(registry, "2")
    assert_refused(client, "2", "failed its decision (beats_popularity)")
    # A person forcing it (rollback --force writes such a record) is the one way it serves.
    write(registry, "2", action="rollback", passed=False, forced=True,
          checks=[{"name": "passing_decision_record", "passed": False}])
    assert client.app.state.service.reload_champion()["model_version"] == "2"
    assert_serves(client, "2")


def test_forged_decision_record_is_refused(client, registry):
    from registry.decision_record import RECORD_TAG, SIGNATURE_TAG
    from training.tracking import mlflow_client

    mlflow = mlflow_client(registry)
    name = registry.registered_model_name
    move_alias_by_hand(registry, "2")
    # A well-formed record signed with a key that is not the platform's.
    write(registry.replace(decision_signing_key="attacker"), "2", action="promotion", passed=True)
    assert_refused(client, "2", "signature does not match")
    # v1's genuine signed tags copied onto v2.
    for tag in (RECORD_TAG, SIGNATURE_TAG):
        mlflow.set_model_version_tag(name, "2", tag, mlflow.get_model_version(name, "1").tags[tag])
    assert_refused(client, "2", "belongs to", refusals=2)
    # v2's genuine failed record, edited to say it passed.
    write(registry, "2", action="promotion", passed=False)
    text = mlflow.get_model_version(name, "2").tags[RECORD_TAG]
    mlflow.set_model_version_tag(name, "2", RECORD_TAG, text.replace('"passed":false', '"passed":true'))
    assert_refused(client, "2", "signature does not match", refusals=3)


def test_artifact_replaced_after_its_decision_is_refused(client, registry):
    # v2 passed for its own checkpoint; then the file in the artifact store is swapped for
    # another valid checkpoint (v1's bytes), which loads and answers fine: only the digest tells.
    promote_for_test(registry, "2")
    artifact_path(registry, "2").write_bytes(artifact_path(registry, "1").read_bytes())
    assert_refused(client, "2", "artifact replaced")
