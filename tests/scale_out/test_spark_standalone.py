"""The scale-out path on one machine: a Spark standalone master and worker (started from the pip
``pyspark`` distribution's ``spark-class``, on free ports, small memory), the ingestion job and
``dbt build`` (spark target, ``method: session``) submitted to that master only by settings:
``RECSYS_SPARK_MASTER=spark://...`` and ``RECSYS_DBT_TARGET=spark``. The master's own JSON
status must list the platform's application, so the work ran on the cluster's executor.

The stages run in a child process: a Spark driver binds to one master for its lifetime, and this
test process may already hold a local session from other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.process_groups import stop_process_groups

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

FIRST_DAY = date(2026, 8, 1)
DAYS = 2

CHILD = r"""
import json, os, sys
from datetime import date
from pathlib import Path
from core.settings import Settings
from pipeline import stages
settings = Settings.from_env()
first, last = date.fromisoformat(sys.argv[1]), date.fromisoformat(sys.argv[2])
ingested = stages.ingest_events_range(settings, first, last)
from ingest.spark import spark_session
master = spark_session(settings).sparkContext.master
# The sessionization path only (staging -> sessionized events -> fct_sessions, with their
# tests): the whole project takes minutes on a small executor; the models are the same.
# DBT_INDIRECT_SELECTION=cautious (set by the test) leaves out tests that also need models
# outside the selection (relationships to user_sequences).
from sessions.session_tables import build_session_tables
sessions = build_session_tables(settings, select="+fct_sessions")
print("RESULT " + json.dumps({"master": master, "written_rows": ingested["written_rows"],
                              "sessions": sessions}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class() -> str:
    found = shutil.which("spark-class", path=str(Path(sys.executable).parent)) or shutil.which("spark-class")
    if found is None:
        pytest.skip("spark-class not found (pip pyspark installs it next to python)")
    return found


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    spark_class = _spark_class()
    work = tmp_path_factory.mktemp("spark-standalone")
    master_port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, SPARK_LOG_DIR=str(work), SPARK_WORKER_DIR=str(work / "worker"),
               SPARK_LOCAL_IP="127.0.0.1", SPARK_DAEMON_MEMORY="512m")
    master_url = f"spark://127.0.0.1:{master_port}"
    procs = []
    logs = []
    for name, args in (
        ("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(master_port), "--webui-port", str(master_ui)]),
        ("worker", ["org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                    "--cores", "2", "--memory", "1g", "--webui-port", str(worker_ui),
                    "--work-dir", str(work / "worker")]),
    ):
        log = open(work / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        if name == "master":
            time.sleep(1)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = _get_json(f"http://127.0.0.1:{master_ui}/json/")
                if status.get("aliveworkers", len(status.get("workers", []))) >= 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("standalone cluster did not start:\n"
                            + "\n".join((work / f"{n}.log").read_text()[-2000:] for n in ("master", "worker")))
            time.sleep(1)
        yield master_url, f"http://127.0.0.1:{master_ui}/json/"
    finally:
        stop_process_groups(procs[::-1], timeout_s=15)
        for log in logs:
            log.close()


def test_ingestion_and_dbt_run_on_the_standalone_master(spark_cluster, tmp_path):
    from ingest.generator import generate_logs
    from core.settings import REPO_ROOT, Settings

    master_url, status_url = spark_cluster
    home = tmp_path / "recsys"
    settings = Settings(home=home)
    generate_logs(settings.raw_dir, FIRST_DAY, DAYS, n_users=150, n_items=40, seed=3)
    env = dict(os.environ, RECSYS_HOME=str(home), RECSYS_SPARK_MASTER=master_url,
               RECSYS_DBT_TARGET="spark", RECSYS_SPARK_DRIVER_MEMORY="1g",
               DBT_INDIRECT_SELECTION="cautious",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    out = subprocess.run([sys.executable, "-c", CHILD, FIRST_DAY.isoformat(), last.isoformat()],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-5000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))

    assert result["master"] == master_url
    assert result["written_rows"] > 0
    assert result["sessions"]["models"] >= 3 and result["sessions"]["tests_failed"] == 0
    assert result["sessions"]["rows"].get("fct_sessions", 0) > 0
    # The lake and the Spark warehouse were written through the cluster's executor.
    assert any(settings.events_dir.glob("event_date=*/arrival_date=*/*.parquet"))
    status = _get_json(status_url)
    apps = status.get("completedapps", []) + status.get("activeapps", [])
    assert any(app.get("name") == "recsys-platform" for app in apps), apps
