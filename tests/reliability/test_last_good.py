"""A restart while the champion cannot be loaded serves the last good version instead of 503.

Every verified load is kept on local disk (``settings.last_good_dir``). Each test first runs the
API once with v1 promoted the genuine way (so v1 is kept), then restarts it with the champion
unloadable in one way: the copy serves, ``/health`` answers 200 ``degraded`` with the reason and
the version, and the poller returns to ``ok`` once the registry's champion loads. A copy edited
on disk is not served (503 ``no_model``: nothing trustworthy to serve). ``/health`` and
``/metrics`` answer even while every worker thread of the sync routes is stuck."""

from __future__ import annotations

import socket
import threading

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.registry_fixtures import promote_for_test
from tests.reliability.serving_registry import (
    template_home, metric_lines, move_alias_by_hand, truncate_artifact, two_versions, wait_for,
)


@pytest.fixture
def served_once(tmp_path):
    """v1 promoted and served once, so the API kept it as its last good copy."""
    settings = two_versions(tmp_path / "recsys", template_home())
    promote_for_test(settings, "1")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["model_version"] == "1"
    return settings


@pytest.fixture
def unreachable_mlflow(monkeypatch):
    """The MLflow HTTP client fails at once instead of retrying for minutes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_degraded_on_v1(client, why: str) -> dict:
    health = client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "degraded" and body["model_version"] == "1", body
    assert body["served_from"] == "last_good" and why in body["reason"], body
    answer = client.get("/recommendations/user_0001", params={"k": 5})
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    text = client.get("/metrics").text
    assert metric_lines(text, "recsys_serving_status")['{status="degraded"}'] == 1.0
    assert metric_lines(text, "recsys_model_reloads_total")['{outcome="last_good"}'] == 1.0
    return body


def test_restart_with_the_champion_on_a_broken_version_serves_the_last_good_copy(served_once):
    promote_for_test(served_once, "2")  # v2 passed its checks, then its artifact was damaged
    truncate_artifact(served_once, "2")
    with TestClient(create_app(served_once)) as client:
        body = assert_degraded_on_v1(client, "v2")
        assert body["champion_refused"]["version"] == "2"
        assert "artifact replaced" in body["champion_refused"]["reason"]


def test_restart_without_the_registry_serves_the_last_good_copy(served_once, unreachable_mlflow):
    down = served_once.replace(mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(down)) as client:
        assert_degraded_on_v1(client, "registry unreachable")


def test_degraded_returns_to_ok_when_the_registry_recovers(served_once):
    # The registry's database becomes unreadable (its header overwritten in place), the API
    # restarts, then the file is repaired: the poller loads the champion again from MLflow.
    db = served_once.mlflow_uri.removeprefix("sqlite:///")
    with open(db, "r+b") as handle:
        header = handle.read(100)
        handle.seek(0)
        handle.write(b"\0" * 100)
    following = served_once.replace(champion_poll_seconds=0.1)
    with TestClient(create_app(following)) as client:
        assert_degraded_on_v1(client, "registry unreachable")
        with open(db, "r+b") as handle:
            handle.write(header)
        assert wait_for(lambda: client.get("/health").json()["status"] == "ok")
        body = client.get("/health").json()
        assert body["model_version"] == "1" and body["served_from"] == "registry" and body["reason"] is None
        assert metric_lines(client.get("/metrics").text, "recsys_serving_status")['{status="ok"}'] == 1.0


def test_registry_that_never_answers_does_not_hold_up_the_start(served_once, unreachable_mlflow, monkeypatch):
    import serving.champion

    monkeypatch.setattr(serving.champion, "START_WAIT_S", 0.5)
    accepted: list[socket.socket] = []
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
        hung = served_once.replace(mlflow_tracking_uri=f"http://127.0.0.1:{silent.getsockname()[1]}")
        with TestClient(create_app(hung)) as client:
            assert_degraded_on_v1(client, "did not answer")
            assert accepted, "the registry was never asked"
        for connection in accepted:
            connection.close()


def test_a_local_copy_edited_on_disk_is_not_served(served_once):
    with open(served_once.last_good_dir / "checkpoint.pt", "ab") as handle:
        handle.write(b"tampered")
    move_alias_by_hand(served_once, "2")  # and the champion cannot serve either (no record)
    with TestClient(create_app(served_once)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "no_model" and body["model_version"] is None
        assert "no decision record" in body["reason"] and "local copy of v1 is refused" in body["reason"]
        assert client.get("/recommendations/user_0001").status_code == 503


def test_health_and_metrics_answer_while_sync_routes_are_stuck(served_once, monkeypatch):
    with TestClient(create_app(served_once)) as client:
        service = client.app.state.service
        release = threading.Event()

        def stuck_reload(force: bool = False) -> dict:
            release.wait(60)
            return {"model_version": "1", "changed": False}

        monkeypatch.setattr(service, "reload_champion", stuck_reload)
        # More stuck sync requests than the worker threads the sync routes share.
        stuck = [threading.Thread(target=client.post, args=("/admin/reload",)) for _ in range(48)]
        for thread in stuck:
            thread.start()
        answers = {}

        def probe() -> None:
            answers["health"] = client.get("/health").status_code
            answers["metrics"] = client.get("/metrics").status_code
            answers["while_stuck"] = not release.is_set()

        prober = threading.Thread(target=probe)
        prober.start()
        prober.join(timeout=20)  # a hang guard only
        release.set()
        for thread in [prober, *stuck]:
            thread.join(timeout=60)
        assert answers == {"health": 200, "metrics": 200, "while_stuck": True}
