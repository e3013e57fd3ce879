"""What the platform exposes, and to whom (issue 19):

* docker/compose.yaml publishes every port on 127.0.0.1 unless RECSYS_BIND_ADDRESS says otherwise;
* its MLflow server runs MLflow's basic-auth app, every service that talks to MLflow logs in with
  the admin that server creates, and `docker compose` stops with a message naming the variable
  when a password, key or token is unset or empty;
* its API container, which binds every interface, says so (RECSYS_API_HOST) and has both tokens;
* `make airflow-ui` (pipeline/airflow_env.py) serves the Airflow UI on 127.0.0.1 only;
* a 422 echoes at most a short prefix of what was sent; ``POST /admin/reload`` answers a fixed
  sentence for a failed load and logs the reason instead of sending it.

The compose file is read statically (no container engine here) with the helpers of
tests/docker/test_compose_static.py; the MLflow test at the end starts a real basic-auth server.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import REPO_ROOT, Settings

sys.path.insert(0, str(REPO_ROOT / "tests" / "docker"))
from test_compose_static import (  # noqa: E402
    RequiredVariableMissing, env_example, environment, interpolate, load_compose)

COMPOSE_TEXT = (REPO_ROOT / "docker" / "compose.yaml").read_text()
PUBLISHING = {"api", "mlflow", "airflow-api-server", "spark-master"}
MLFLOW_CLIENTS = {"api", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                  "airflow-triggerer", "airflow-worker"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def published(doc: dict) -> dict[str, list[str]]:
    return {name: [str(p) for p in s["ports"]] for name, s in doc["services"].items() if s.get("ports")}


def test_compose_publishes_ports_on_loopback_unless_told_otherwise():
    without = {k: v for k, v in env_example().items() if k != "RECSYS_BIND_ADDRESS"}
    for values in (env_example(), without):
        ports = published(load_compose(values))
        assert set(ports) == PUBLISHING
        for name, specs in ports.items():
            for spec in specs:
                assert spec.count(":") == 2 and spec.startswith("127.0.0.1:"), (name, spec)
    # One setting opens them all, deliberately.
    opened = published(load_compose(env_example() | {"RECSYS_BIND_ADDRESS": "0.0.0.0"}))
    assert {spec.split(":")[0] for specs in opened.values() for spec in specs} == {"0.0.0.0"}


def test_compose_mlflow_server_requires_a_login():
    mlflow = load_compose()["services"]["mlflow"]
    assert "mlflow server --app-name basic-auth " in mlflow["command"][-1]
    env = environment(mlflow)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    # The auth config is the checkout's file, in the image under /app.
    assert env["MLFLOW_AUTH_CONFIG_PATH"].startswith("/app/")
    config = configparser.ConfigParser()
    assert config.read(REPO_ROOT / env["MLFLOW_AUTH_CONFIG_PATH"].removeprefix("/app/"))
    assert config["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert "admin_password" not in config["mlflow"], "the password comes from docker/.env only"
    # The user store survives a container's replacement and is mounted by the MLflow server only.
    store = Path(config["mlflow"]["database_uri"].removeprefix("sqlite:///")).parent
    mounts = {m.split(":")[1]: m.split(":")[0] for m in mlflow["volumes"]}
    volume = mounts.get(str(store))
    assert volume in load_compose()["volumes"], f"{store} is not on a named volume"
    others = [n for n, s in load_compose()["services"].items()
              if n != "mlflow" and any(m.startswith(f"{volume}:") for m in s.get("volumes") or [])]
    assert others == []


def test_compose_every_mlflow_client_logs_in():
    services = load_compose()["services"]
    server = environment(services["mlflow"])
    clients = {n for n, s in services.items() if "MLFLOW_TRACKING_URI" in environment(s)}
    assert MLFLOW_CLIENTS <= clients
    for name in clients:
        env = environment(services[name])
        assert env.get("MLFLOW_TRACKING_USERNAME") == server["MLFLOW_AUTH_ADMIN_USERNAME"], name
        assert env.get("MLFLOW_TRACKING_PASSWORD") == server["MLFLOW_AUTH_ADMIN_PASSWORD"], name


@pytest.mark.parametrize("name", ["MLFLOW_ADMIN_USER", "MLFLOW_ADMIN_PASSWORD",
                                  "MLFLOW_FLASK_SERVER_SECRET_KEY", "RECSYS_ADMIN_TOKEN",
                                  "RECSYS_EVENTS_TOKEN", "RECSYS_DECISION_SIGNING_KEY"])
def test_compose_stops_when_a_credential_is_unset_or_empty(name):
    values = env_example()
    for missing in ({k: v for k, v in values.items() if k != name}, values | {name: ""}):
        with pytest.raises(RequiredVariableMissing, match=rf"\b{name}\b.*set {name} in docker/\.env"):
            interpolate(COMPOSE_TEXT, missing)


def test_compose_api_binding_every_interface_has_both_tokens():
    api = load_compose()["services"]["api"]
    command = api["command"]
    env = environment(api)
    assert command[command.index("--host") + 1] == env["RECSYS_API_HOST"] == "0.0.0.0"
    settings = Settings.from_env(env)
    assert settings.admin_token == "<admin-token>" and settings.events_token == "<events-token>"
    from serving.app import refuse_exposed_without_tokens

    refuse_exposed_without_tokens(settings)  # the app's own start check passes
    # The tokens go to the API only.
    for name, service in load_compose()["services"].items():
        if name != "api":
            assert not {"RECSYS_ADMIN_TOKEN", "RECSYS_EVENTS_TOKEN"} & set(environment(service)), name


def test_make_airflow_ui_binds_loopback(tmp_path):
    from pipeline.airflow_env import airflow_env

    recipe = re.search(r"^airflow-ui:.*\n\t(.+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    assert "-m pipeline.airflow_env" in recipe and recipe.endswith("airflow standalone")
    # A shell without any Airflow setting, as a user's would be.
    shell = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env = airflow_env(Settings(home=tmp_path), base=shell)
    airflow = str(Path(sys.executable).with_name("airflow"))
    host = subprocess.run([airflow, "config", "get-value", "api", "host"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert host.returncode == 0, host.stderr[-2000:]
    assert host.stdout.strip() == "127.0.0.1"  # the api-server's --host default
    # An explicit choice is kept.
    assert airflow_env(Settings(home=tmp_path), base=shell | {"AIRFLOW__API__HOST": "0.0.0.0"})[
        "AIRFLOW__API__HOST"] == "0.0.0.0"


@pytest.mark.parametrize("send", [
    lambda c: c.get("/recommendations/" + "u" * 10_000),
    lambda c: c.post("/recommendations/batch", json={"user_ids": ["u" * 10_000]}),
    lambda c: c.post("/recommendations/batch", json={"user_ids": ["a"], "k": "9" * 10_000}),
    lambda c: c.post("/recommendations/batch", json={"user_ids": ["a"], "u" * 10_000: 1}),
    lambda c: c.post("/recommendations/batch", json={"users": ["u" * 10_000]}),
], ids=["path-id", "body-id", "body-number", "unknown-field-name", "whole-body"])
def test_validation_errors_echo_only_a_prefix(tmp_path, send):
    from serving.app import create_app

    # No lifespan: a request refused by validation never reaches the service.
    answer = send(TestClient(create_app(Settings(home=tmp_path))))
    assert answer.status_code == 422
    assert len(answer.text) < 1000, answer.text[:300]
    text = answer.text
    assert re.search(r"[u9]{60,}\.\.\. \(1\d{4} characters\)", text), text
    assert "u" * 65 not in text and "9" * 65 not in text
    for error in answer.json()["detail"]:
        assert error["loc"][0] in ("path", "body") and error["msg"] and error["type"]


def test_admin_reload_does_not_send_the_load_error(tmp_path, monkeypatch, caplog):
    from serving.app import create_app

    # A registry address nothing answers on: the load error names it (and the library's words).
    port = free_port()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(home=tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{port}", champion_poll_seconds=0)
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.WARNING):
        answer = client.post("/admin/reload")
    assert answer.status_code == 200
    body = answer.json()
    assert body["changed"] is False and body["error"], body
    # A fixed sentence: no address, no library's words.
    assert str(port) not in answer.text and "Connection" not in answer.text, body["error"]
    assert len(body["error"]) < 100
    assert any(str(port) in r.getMessage() and "/admin/reload" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- a real basic-auth MLflow server
def _wait_healthy(url: str, server: subprocess.Popen, log: Path, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s  # a hang guard only: startup is waited for by polling
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.5)


@pytest.mark.heavy
def test_mlflow_basic_auth_admits_the_platform_client_only_with_the_login(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    from training.tracking import get_or_create_experiment, mlflow_client

    values = env_example() | {"MLFLOW_ADMIN_PASSWORD": "exposure-test-password",
                              "MLFLOW_FLASK_SERVER_SECRET_KEY": "exposure-test-key"}
    compose = load_compose(values)
    server_env = environment(compose["services"]["mlflow"])
    assert "--app-name basic-auth" in compose["services"]["mlflow"]["command"][-1]
    # The stack's auth config, its user store in this test's folder.
    config = (REPO_ROOT / server_env["MLFLOW_AUTH_CONFIG_PATH"].removeprefix("/app/")).read_text()
    auth_ini = tmp_path / "basic_auth.ini"
    auth_ini.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{tmp_path / 'auth.db'}", config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    log = tmp_path / "mlflow.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [mlflow, "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts", "--workers", "1"],
            env=dict(os.environ) | server_env | {"MLFLOW_AUTH_CONFIG_PATH": str(auth_ini)},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        _wait_healthy(url, server, log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
        assert refused.value.code == 401

        # The platform's client with the API container's login, as compose sets it.
        api_env = environment(compose["services"]["api"])
        settings = Settings(home=tmp_path / "recsys", mlflow_tracking_uri=url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, api_env[name])
        client = mlflow_client(settings)
        experiment_id = get_or_create_experiment(client, settings, "exposure-check")
        assert client.get_experiment(experiment_id).name == "exposure-check"

        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(MlflowException, match="401|not authenticated|Unauthorized"):
            mlflow_client(settings).get_experiment(experiment_id)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
