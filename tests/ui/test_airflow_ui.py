"""The Airflow UI in a real browser (Playwright driving the system Chromium).

Starts the Airflow 3 components (api-server, scheduler, dag-processor) in a temporary
AIRFLOW_HOME with the embedded environment of ``pipeline/airflow_env.py`` (what ``make
airflow-ui`` runs), logs in through the simple auth manager with a known password, checks the
nightly DAG's page (doc, owner, tags), fills the trigger form (Params with their descriptions)
for a tiny generated log with model=popularity, waits for the run and checks every task's state
through the REST API v2, and keeps screenshots under the test's tmp dir and
``$RECSYS_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repository).

Skipped when Chromium (``/usr/bin/chromium`` or ``$RECSYS_CHROMIUM``) or the ``playwright``
package is absent.
"""

from __future__ import annotations

import json
import os
import shutil
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

from pipeline.airflow_env import airflow_env
from core.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

CHROMIUM = os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "admin", "ui-test-password"
DAG_ID = "nightly_recsys"
FIRST_DAY = date(2026, 9, 1)
HISTORY_DAYS = 3
RUN_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)
RUN_TIMEOUT_S = int(os.environ.get("RECSYS_UI_RUN_TIMEOUT", "600"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir() -> Path:
    return Path(os.environ.get("RECSYS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


class Api:
    """REST API v2 with a JWT from the simple auth manager's /auth/token."""

    def __init__(self, base: str):
        self.base = base
        self.token: str | None = None

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            if self.token is None:
                self.token = self._call("POST", "/auth/token", {"username": USER, "password": PASSWORD},
                                        auth=False)["access_token"]
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.load(response)

    def get(self, path: str):
        return self._call("GET", path)

    def patch(self, path: str, body: dict):
        return self._call("PATCH", path, body)


@pytest.fixture(scope="module")
def airflow_services(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set RECSYS_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from ingest.generator import generate_logs
    from pipeline.stages import ingest_events_range

    home = tmp_path_factory.mktemp("ui") / "recsys"
    settings = Settings(home=home, spark_master="local[2]")
    generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 1, n_users=300, n_items=60, seed=5)
    ingest_events_range(settings, FIRST_DAY, RUN_DAY - timedelta(days=1))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = airflow_home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = airflow_env(settings, base=dict(os.environ))
    env.update({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "ui-test-jwt-secret",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # Unpausing the DAG must not also start its latest scheduled (cron) run: only the run
        # triggered from the form (max_active_runs=1 would queue it behind that one).
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "RECSYS_SPARK_MASTER": "local[2]",
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    procs = []
    logs = []
    for name, args in (("api-server", ["api-server", "--port", str(port)]),
                       ("scheduler", ["scheduler"]), ("dag-processor", ["dag-processor"])):
        log = open(home / f"{name}.log", "w")
        logs.append(log)
        # Own session: the whole component (its workers, task processes) stops with it.
        procs.append(subprocess.Popen([airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    api = Api(base)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                api.get(f"/api/v2/dags/{DAG_ID}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    pytest.fail("Airflow did not come up:\n" + "\n".join(
                        (home / f"{n}.log").read_text()[-3000:] for n in ("api-server", "scheduler", "dag-processor")))
                time.sleep(2)
        yield settings, base, api
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, out / name)
    return path


def test_nightly_dag_in_the_ui(airflow_services, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    settings, base, api = airflow_services
    expect.set_options(timeout=60_000)  # two shared cores: the UI can take its time
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            # Log in (simple auth manager, password from its passwords file)
            page.goto(base + "/")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.locator("button[type=submit]").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)

            # The DAG's page: owner, tags, doc
            page.goto(f"{base}/dags/{DAG_ID}")
            expect(page.get_by_text("recsys-platform").first).to_be_visible()
            for tag in ("nightly", "recsys", "training"):
                expect(page.get_by_role("link", name=tag, exact=True).first).to_be_visible()
            page.get_by_role("button", name="Dag Docs").click()
            docs = page.get_by_role("dialog")
            expect(docs.get_by_text("Nightly recommender pipeline")).to_be_visible()
            expect(docs.get_by_text("write_nightly_report").first).to_be_visible()
            _shot(page, tmp_path, "ui-dag-docs.png")
            page.keyboard.press("Escape")
            expect(docs).to_be_hidden()

            # The trigger form: Params with titles and descriptions
            page.get_by_role("button", name="Trigger Dag").click()
            form = page.get_by_role("dialog")
            for text in ("Arrival date", "Arrival day to process (YYYY-MM-DD)", "Model",
                         "Candidate model to train.", "Epochs", "Maximum training epochs"):
                expect(form.get_by_text(text).first).to_be_visible()
            form.locator("#element_date").fill(RUN_DAY.isoformat())
            form.get_by_role("combobox").last.click()
            page.get_by_role("option", name="popularity").click()
            form.locator("input[name=element_epochs]").fill("1")
            _shot(page, tmp_path, "ui-trigger-form.png")
            form.get_by_role("button", name="Trigger", exact=True).click()
            page.wait_for_url(lambda url: "/runs/" in url)
            run_id = page.url.split("/runs/", 1)[1].split("/")[0].split("?")[0]
            from urllib.parse import unquote

            run_id = unquote(run_id)
            run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            assert run["conf"] == {"date": RUN_DAY.isoformat(), "model": "popularity", "epochs": 1}
            # A freshly parsed DAG is paused: the form's "unpause on trigger" is the default;
            # make sure whatever the default.
            api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

            deadline = time.monotonic() + RUN_TIMEOUT_S
            while run["state"] not in ("success", "failed") and time.monotonic() < deadline:
                time.sleep(3)
                run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            instances = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            states = {ti["task_id"]: ti["state"] for ti in instances}

            page.goto(f"{base}/dags/{DAG_ID}/runs/{run_id}")
            expect(page.get_by_text("promote_candidate").first).to_be_visible()
            page.wait_for_timeout(1500)
            _shot(page, tmp_path, "ui-nightly-run.png")
        finally:
            browser.close()

    assert run["state"] == "success", (run["state"], states)
    assert set(states.values()) == {"success"} and len(states) == 9, states
    report = settings.home / "reports" / RUN_DAY.isoformat() / "index.html"
    assert report.exists()
    assert (artifacts_dir() / "ui-nightly-run.png").exists()
