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
import subprocess
import time
from datetime import date, timedelta

import pytest

from pipeline.airflow_env import airflow_env
from core.settings import Settings
from tests.ui.browser import CHROMIUM, airflow_bin, airflow_components, artifacts_dir, free_port, login, \
    require_browser, shot

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

USER, PASSWORD = "admin", "ui-test-password"
DAG_ID = "nightly_recsys"
FIRST_DAY = date(2026, 9, 1)
HISTORY_DAYS = 3
RUN_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)
RUN_TIMEOUT_S = int(os.environ.get("RECSYS_UI_RUN_TIMEOUT", "600"))


@pytest.fixture(scope="module")
def airflow_services(tmp_path_factory):
    require_browser()
    from ingest.generator import generate_logs
    from pipeline.stages import ingest_events_range

    home = tmp_path_factory.mktemp("ui") / "recsys"
    settings = Settings(home=home, spark_master="local[2]")
    generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 1, n_users=300, n_items=60, seed=5)
    ingest_events_range(settings, FIRST_DAY, RUN_DAY - timedelta(days=1))

    port = free_port()
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
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
    with airflow_components(env, port, home, ("api-server", "scheduler", "dag-processor"),
                            f"/api/v2/dags/{DAG_ID}", USER, PASSWORD) as api:
        yield settings, base, api


def test_nightly_dag_in_the_ui(airflow_services, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    settings, base, api = airflow_services
    expect.set_options(timeout=60_000)  # two shared cores: the UI can take its time
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            login(page, base, USER, PASSWORD)

            # The DAG's page: owner, tags, doc
            page.goto(f"{base}/dags/{DAG_ID}")
            expect(page.get_by_text("recsys-platform").first).to_be_visible()
            for tag in ("nightly", "recsys", "training"):
                expect(page.get_by_role("link", name=tag, exact=True).first).to_be_visible()
            page.get_by_role("button", name="Dag Docs").click()
            docs = page.get_by_role("dialog")
            expect(docs.get_by_text("Nightly recommender pipeline")).to_be_visible()
            expect(docs.get_by_text("write_nightly_report").first).to_be_visible()
            shot(page, "ui-dag-docs.png", tmp_path)
            page.keyboard.press("Escape")
            expect(docs).to_be_hidden()

            # The trigger form: Params with titles and descriptions
            page.get_by_role("button", name="Trigger Dag").click()
            form = page.get_by_role("dialog")
            for text in ("Arrival date", "Arrival day to process (YYYY-MM-DD)", "Model",
                         "Candidate model to train", "Epochs", "Maximum training epochs"):
                expect(form.get_by_text(text).first).to_be_visible()
            form.locator("#element_date").fill(RUN_DAY.isoformat())
            # The first choice field is the model (Params in the DAG's order; the run conf checks it).
            form.get_by_role("combobox").first.click()
            page.get_by_role("option", name="popularity").click()
            form.locator("input[name=element_epochs]").fill("1")
            shot(page, "ui-trigger-form.png", tmp_path)
            submit = form.get_by_role("button", name="Trigger", exact=True)
            # Disabled while a Param is invalid: the failure shows the form (and its error) then.
            try:
                expect(submit).to_be_enabled(timeout=15_000)
            except AssertionError:
                shot(page, "ui-trigger-form-refused.png", tmp_path)
                pytest.fail("the trigger form refuses its values:\n" + form.inner_text())
            submit.click()
            page.wait_for_url(lambda url: "/runs/" in url)
            run_id = page.url.split("/runs/", 1)[1].split("/")[0].split("?")[0]
            from urllib.parse import unquote

            run_id = unquote(run_id)
            run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            chosen = {key: run["conf"].get(key) for key in ("date", "model", "epochs")}
            assert chosen == {"date": RUN_DAY.isoformat(), "model": "popularity", "epochs": 1}, run["conf"]
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
            shot(page, "ui-nightly-run.png", tmp_path)
        finally:
            browser.close()

    assert run["state"] == "success", (run["state"], states)
    assert set(states.values()) == {"success"} and len(states) == 9, states
    report = settings.home / "reports" / RUN_DAY.isoformat() / "index.html"
    assert report.exists()
    assert (artifacts_dir() / "ui-nightly-run.png").exists()
