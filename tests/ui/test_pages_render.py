"""The pages a newcomer opens, opened as a person would: in Chromium, with the internet cut off.

* the API's ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served by uvicorn from ``create_app``
  for a home with no model: the operations are listed, from the app's own assets;
* the nightly report, rendered from recorded stage outputs into a file and opened by
  ``file://``: every chart's SVG is drawn and visible, the metrics table has rows, the console
  stays clean;
* (heavy) Airflow's page of a task instance after a real failing night run by
  ``pipeline.run_dag``: its log shows the quality gate's error and the stage's structured lines.

Screenshots go to ``$RECSYS_TEST_ARTIFACTS`` (default ``test-artifacts/``, not committed).
Skipped when Chromium (``/usr/bin/chromium`` or ``$RECSYS_CHROMIUM``) or Playwright is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest

from core.settings import Settings
from tests.ui.browser import (CHROMIUM, airflow_bin, airflow_components, block_the_internet, console_errors,
                              free_port, login, require_browser, shot)

TIMEOUT_MS = 60_000  # two shared cores: pages can take their time
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def chromium():
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page that can reach only this machine; ``page.refused`` and ``page.errors`` list
    what it tried to fetch elsewhere and what its console reported as errors."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.refused = block_the_internet(page)
    page.errors = console_errors(page)
    try:
        yield page
    finally:
        context.close()


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """``create_app(settings)`` under uvicorn (lifespan on) on a free loopback port, in a thread."""
    import uvicorn

    from serving.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_base(tmp_path_factory) -> Iterator[str]:
    require_browser()
    home = tmp_path_factory.mktemp("api_docs") / "recsys"
    # No model: the docs pages need none, and the app still starts (health says no_model).
    with serving(Settings(home=home, champion_poll_seconds=0)) as base:
        yield base


def test_swagger_ui_renders_the_operations_offline(page, api_base) -> None:
    from playwright.sync_api import expect

    page.goto(api_base + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Sequential recommender API")
    operations = page.locator(".swagger-ui .opblock")
    expect(operations.first).to_be_visible()
    recommend = page.locator(".opblock-get", has=page.locator('[data-path="/recommendations/{user_id}"]'))
    expect(recommend).to_be_visible()
    paths = set(page.locator(".opblock-summary-path").evaluate_all("els => els.map(e => e.dataset.path)"))
    assert {"/recommendations/{user_id}", "/recommendations/batch", "/health", "/events"} <= paths, paths
    # An operation opens: its parameters render (the page is live, not a static picture).
    recommend.locator(".opblock-summary").click()
    expect(recommend.locator(".parameters-container")).to_contain_text("user_id")
    shot(page, "api-docs.png")
    assert page.refused == [], page.refused
    assert page.errors == [], page.errors


def test_redoc_renders_the_operations_offline(page, api_base) -> None:
    from playwright.sync_api import expect

    page.goto(api_base + "/redoc")
    expect(page.locator("h1").first).to_contain_text("Sequential recommender API")
    # ReDoc's side menu: one entry per operation, and each operation's section with its path.
    menu = page.locator("[role=menuitem]")
    expect(menu.first).to_be_visible()
    labels = {text.strip() for text in menu.all_inner_texts()}
    assert {"Recommendations", "Recommendations for 1-1000 users", "Health", "Metrics"} <= {
        label.split("\n")[-1].strip() for label in labels}, labels
    expect(page.get_by_text("/recommendations/{user_id}").first).to_be_attached()
    shot(page, "api-redoc.png")
    # ReDoc's "API docs by Redocly" badge is the one thing it fetches online; offline the image
    # fails and ReDoc leaves it out (its onError). Anything else would be a page that needs the internet.
    assert set(page.refused) <= {REDOC_BADGE}, page.refused
    assert [e for e in page.errors if REDOC_BADGE not in e] == [], page.errors


# Each chart's SVG: its box on the page, and what is drawn in it (matplotlib's paths and texts).
CHART_FACTS = """svgs => svgs.map(svg => {
  const box = svg.getBoundingClientRect();
  const drawn = [...svg.querySelectorAll('path, use, rect')].filter(e => {
    const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length;
  const texts = [...svg.querySelectorAll('text')].map(t => t.textContent.trim()).filter(Boolean);
  return {label: svg.getAttribute('aria-label'), width: box.width, height: box.height,
          visible: getComputedStyle(svg).visibility === 'visible', drawn, texts: texts.length};
})"""


def test_the_report_draws_its_charts_offline(page, tmp_path) -> None:
    from playwright.sync_api import expect

    from pipeline.report_page import render
    from tests.report.test_report_page import DAYS, _data

    report = tmp_path / "index.html"
    report.write_text(render(_data(DAYS), metric="ndcg_at_10"), encoding="utf-8")

    page.goto(report.as_uri())
    expect(page.locator("h1").first).to_contain_text("2026-10-03")
    charts = page.locator("svg[role=img]").evaluate_all(CHART_FACTS)
    labels = [c["label"] for c in charts]
    assert len(charts) == 7 and "Rows per arrival day" in labels, labels
    for chart in charts:
        assert chart["visible"] and chart["width"] > 100 and chart["height"] > 50, chart
        assert chart["drawn"] > 5 and chart["texts"] > 2, chart
    for label in labels:
        expect(page.locator(f'svg[aria-label="{label}"]')).to_be_visible()
    # The comparison's metrics table: a row per model, with numbers in it.
    rows = page.locator("section:has(#comparison) table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 3
    assert any(any(ch.isdigit() for ch in text) for text in rows.locator("td.num").all_inner_texts())
    shot(page, "nightly-report.png")
    assert page.refused == [], page.refused
    assert page.errors == [], page.errors


# --- Airflow: a task's log in the UI, after a real (failing) night -------------------------------

DAG_ID = "nightly_recsys"
FIRST_DAY = date(2026, 8, 1)
HISTORY_DAYS = 3
CORRUPT_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)


@pytest.fixture(scope="module")
def failed_night(tmp_path_factory):
    """A night the quality gate stops, run by ``python -m pipeline.run_dag`` in its own Airflow
    home, then that home's api-server: (settings, base URL, REST API, the run's result)."""
    require_browser()
    from ingest.generator import generate_logs
    from pipeline.airflow_env import airflow_env, write_login
    from pipeline.stages import ingest_events_range

    home = tmp_path_factory.mktemp("task_log_ui") / "recsys"
    settings = Settings(home=home, spark_master="local[2]", airflow_password="ui-log-test-password")
    generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 1, n_users=200, n_items=40, seed=11,
                  corrupt_dates=[CORRUPT_DAY])
    ingest_events_range(settings, FIRST_DAY, CORRUPT_DAY - timedelta(days=1))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    write_login(settings)
    env = airflow_env(settings, base=dict(os.environ))
    env.update({
        # The test session's own embedded Airflow is in os.environ: this home's database instead.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "ui-log-test-jwt-secret",
        "RECSYS_HOME": str(home),
        "RECSYS_SPARK_MASTER": "local[2]",
        "RECSYS_AIRFLOW_PASSWORD": settings.airflow_password,
    })
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "pipeline.run_dag", "--date", CORRUPT_DAY.isoformat(),
                           "--model", "popularity", "--epochs", "1"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("DAG_RUN_RESULT "))
    assert result["tasks"]["check_quality"] == "failed", result
    with airflow_components(env, port, home, ("api-server",), f"/api/v2/dags/{DAG_ID}",
                            settings.airflow_user, settings.airflow_password) as api:
        yield settings, base, api, result


@pytest.mark.slow
@pytest.mark.heavy
def test_a_failed_tasks_log_shows_in_the_airflow_ui(failed_night, page) -> None:
    from playwright.sync_api import expect

    settings, base, api, result = failed_night
    run_id = result["run_id"]
    login(page, base, settings.airflow_user, settings.airflow_password)

    def task_log(task_id: str):
        """The task instance's page (its log first); the log viewer's lines as rendered."""
        page.goto(f"{base}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{task_id}")
        return page.get_by_test_id("virtual-scroll-container")

    # The red square: the gate's error, in the task's own log (the viewer opens at its end).
    log = task_log("check_quality")
    expect(log.get_by_text("Task failed with exception").first).to_be_visible()
    expect(log).to_contain_text('"exc_type":"QualityGateFailed"')
    expect(log).to_contain_text(f"quality gate {CORRUPT_DAY}: FAILED")
    expect(page.get_by_text("Log file not found")).to_have_count(0)
    shot(page, "ui-task-log-check-quality.png")

    # A task that succeeded: the stage's structured lines, with their fields, from its start.
    log = task_log("ingest_events")
    expect(log.get_by_text("stage finished").first).to_be_visible()
    to_top = page.get_by_role("button", name="Press Ctrl+↑ to scroll to top")
    if to_top.count():  # only there when the log is longer than its panel
        to_top.click()
    expect(log.get_by_text("stage started").first).to_be_visible()
    expect(log).to_contain_text(f"stage started stage=ingest_events run_date={CORRUPT_DAY}")
    shot(page, "ui-task-log-ingest-events.png")
    assert api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")["state"] == "failed"
