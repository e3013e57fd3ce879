"""The platform against real servers with exactly the settings ``docker/compose.yaml`` gives its
containers (values from ``docker/.env.example``, the test's own database names), host names
rewritten to 127.0.0.1:

* Airflow's metadata database: ``airflow db migrate`` into a fresh Postgres database;
* MLflow: an ``mlflow server`` started with the compose service's command line (backend store a
  fresh Postgres database, basic auth with docker/mlflow/basic_auth.ini, its user store moved
  to the test's folder), the platform's MLFLOW_TRACKING_URI and credentials pointing at it;
* Feast: the online store on Redis (the compose connection string, on this test's own db number);

then the nightly stages on a tiny generated log, checking the runs, the registered model and the
online features land in those servers. Spark runs ``local[2]`` and dbt on DuckDB here (the Spark
standalone path is tests/scale_out). Skipped when Postgres or Redis is unreachable.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.heavy]

PG_HOST, PG_PORT, PG_ADMIN = "127.0.0.1", 5432, os.environ.get("RECSYS_TEST_PG_USER", "postgres")
REDIS_DB = int(os.environ.get("RECSYS_TEST_REDIS_DB", "13"))
FIRST_DAY = date(2026, 7, 1)
HISTORY_DAYS = 3
RUN_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)

sys.path.insert(0, str(Path(__file__).parent))
from test_compose_static import environment, env_example, load_compose  # noqa: E402


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_ADMIN, "-d", db, "-Atc", sql],
                          check=True, capture_output=True, text=True).stdout


def _local(value: str, mlflow_port: int) -> str:
    """Compose service names -> this machine."""
    value = value.replace("http://mlflow:5000", f"http://127.0.0.1:{mlflow_port}")
    value = re.sub(r"@postgres:5432/", f"@{PG_HOST}:{PG_PORT}/", value)
    value = re.sub(r"^redis:6379,db=\d+", f"127.0.0.1:6379,db={REDIS_DB}", value)
    return value


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not (_reachable(PG_HOST, PG_PORT) and _reachable("127.0.0.1", 6379)):
        pytest.skip("Postgres on 127.0.0.1:5432 or Redis on 127.0.0.1:6379 is not reachable")
    if subprocess.run(["which", "psql"], capture_output=True).returncode != 0:
        pytest.skip("psql client not installed")
    import redis

    suffix = os.getpid()
    values = env_example() | {
        "POSTGRES_USER": PG_ADMIN,  # trust auth on this machine; the password is not checked
        "POSTGRES_PASSWORD": "unused-with-trust-auth",
        "AIRFLOW_DB_NAME": f"recsys_test_airflow_{suffix}",
        "MLFLOW_DB_NAME": f"recsys_test_mlflow_{suffix}",
        "MLFLOW_ADMIN_PASSWORD": "compose-test-admin-password",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "compose-test-secret-key",
    }
    compose = load_compose(values)
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    if client.dbsize():
        pytest.skip(f"Redis db {REDIS_DB} is not empty; set RECSYS_TEST_REDIS_DB to a free db")
    for db in (values["AIRFLOW_DB_NAME"], values["MLFLOW_DB_NAME"]):
        _psql(f"drop database if exists {db}")
        _psql(f"create database {db}")

    home = tmp_path_factory.mktemp("compose") / "recsys"
    mlflow_port = _free_port()
    # The MLflow service's own command line, with its environment, on this machine.
    mlflow_service = compose["services"]["mlflow"]
    script = _local(mlflow_service["command"][-1], mlflow_port)
    script = script.replace("--port 5000", f"--port {mlflow_port}").replace("--host 0.0.0.0", "--host 127.0.0.1")
    script = script.replace("/data/recsys", str(home))
    mlflow_env = dict(os.environ, **environment(mlflow_service))
    # The image's auth config (/app/docker/mlflow/...) from the checkout, its user store here.
    auth_config = REPO_ROOT / mlflow_env["MLFLOW_AUTH_CONFIG_PATH"].removeprefix("/app/")
    local_auth = home.parent / "basic_auth.ini"
    local_auth.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{home.parent / 'auth.db'}",
                                 auth_config.read_text()))
    mlflow_env["MLFLOW_AUTH_CONFIG_PATH"] = str(local_auth)
    mlflow_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    mlflow_log = open(home.parent / "mlflow.log", "w")
    server = subprocess.Popen(["bash", "-c", _local(script, mlflow_port)], env=mlflow_env,
                              stdout=mlflow_log, stderr=subprocess.STDOUT, start_new_session=True,
                              cwd=home.parent)
    # The platform containers' environment, rewritten to this machine.
    task_env = {k: _local(v, mlflow_port) for k, v in environment(compose["services"]["airflow-scheduler"]).items()}
    task_env |= {"RECSYS_HOME": str(home), "RECSYS_SPARK_MASTER": "local[2]", "RECSYS_DBT_TARGET": "duckdb",
                 "AIRFLOW_HOME": str(home / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags")}
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    mlflow_log.flush()
                    pytest.fail("mlflow server did not start:\n" + (home.parent / "mlflow.log").read_text()[-3000:])
                time.sleep(1)
        yield values, task_env, client
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        mlflow_log.close()
        for key in client.scan_iter(count=1000):  # only this test's db number
            client.delete(key)
        for db in (values["AIRFLOW_DB_NAME"], values["MLFLOW_DB_NAME"]):
            _psql(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{db}'")
            _psql(f"drop database if exists {db}")


def test_compose_settings_are_the_cluster_ones(servers):
    _, task_env, _ = servers
    settings = Settings.from_env(task_env)
    # The server wants a login; the tasks' environment carries it (the stages below use it).
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{settings.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    assert task_env["MLFLOW_TRACKING_PASSWORD"] == "compose-test-admin-password"
    assert settings.feast_online_store == "redis"
    assert settings.redis_connection_string == f"127.0.0.1:6379,db={REDIS_DB}"
    assert settings.mlflow_uri.startswith("http://127.0.0.1:")
    assert task_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")


def test_airflow_metadata_migrates_into_postgres(servers):
    values, task_env, _ = servers
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("Airflow 3 on Postgres needs asyncpg (apache-airflow[postgres]); not installed")
    env = dict(os.environ, **task_env)
    out = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    tables = _psql("select count(*) from information_schema.tables where table_name in "
                   "('dag', 'dag_run', 'task_instance', 'asset')", db=values["AIRFLOW_DB_NAME"])
    assert int(tables) == 4


def test_nightly_stages_land_in_postgres_and_redis(servers, monkeypatch):
    values, task_env, client = servers
    from ingest.generator import generate_logs
    from pipeline import stages

    settings = Settings.from_env(task_env)
    # MLflow's client reads its login from the process environment, as in the containers.
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, task_env[name])
    generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 1, n_users=200, n_items=50, seed=21)
    stages.ingest_events_range(settings, FIRST_DAY, RUN_DAY)
    stages.build_sessions(settings, RUN_DAY)
    assert stages.check_quality(settings, RUN_DAY)["passed"] is True
    features = stages.materialize_features(settings, RUN_DAY)
    assert features["online_store"] == "redis"
    candidate = stages.train_candidate(settings, RUN_DAY, "popularity", 1)
    decision = stages.evaluate_candidate(settings, RUN_DAY, candidate)
    record = stages.promote_candidate(settings, RUN_DAY, decision)

    # Feast's online rows are in this test's Redis db, and read back through the platform.
    assert client.dbsize() > 0
    from features.online_reader import read_user_features

    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        users = [r[0] for r in con.execute("select distinct user_id from user_features limit 5").fetchall()]
    online = read_user_features(settings, users)
    assert any(online[u].get("recent_item_ids") for u in users), online

    # MLflow's runs and registry live in the Postgres database behind the server.
    db = values["MLFLOW_DB_NAME"]
    assert int(_psql("select count(*) from runs", db=db)) >= 1
    name = settings.registered_model_name
    assert int(_psql(f"select count(*) from model_versions where name = '{name}'", db=db)) >= 1
    if record["promote"]:
        alias = _psql(f"select version from registered_model_aliases where name = '{name}' "
                      f"and alias = '{settings.champion_alias}'", db=db).strip()
        assert alias == str(record["candidate_version"])
