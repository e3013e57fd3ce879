"""``make airflow-ui`` (``python -m pipeline.airflow_env airflow standalone``): the login comes from
the settings and is the same every run; stopping it (Ctrl-C, SIGTERM) leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from core.settings import REPO_ROOT, Settings
from pipeline.airflow_env import airflow_env, login_lines, write_login


def test_the_login_comes_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, airflow_user="ops", airflow_password="s3cret pass")
    env = airflow_env(settings, base={})
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "ops:admin"
    path = write_login(settings)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(path)
    assert json.loads(path.read_text()) == {"ops": "s3cret pass"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Written again on every start: a password file Airflow generated earlier does not win.
    path.write_text(json.dumps({"ops": "generated-by-airflow"}))
    write_login(settings)
    assert json.loads(path.read_text()) == {"ops": "s3cret pass"}
    assert "login: ops / s3cret pass" in "\n".join(login_lines(settings, env))
    assert "s3cret" not in repr(settings)
    assert Settings.from_env({"RECSYS_AIRFLOW_USER": "ann", "RECSYS_AIRFLOW_PASSWORD": "pw"}).airflow_password == "pw"


# A process tree with a member that ignores SIGINT and SIGTERM and one that left the group.
STUBBORN_TREE = textwrap.dedent("""
    import sys
    import pipeline.airflow_env as airflow_env
    airflow_env.STOP_GRACE_S = airflow_env.TERM_GRACE_S = 2.0
    tree = "trap '' INT TERM; sleep 300 & setsid sleep 301 & wait"
    sys.exit(airflow_env.run_supervised(["bash", "-c", tree], {"PATH": "/usr/bin:/bin"}))
""")


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_a_supervised_command_stops_with_every_process_it_started() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN_TREE], cwd=REPO_ROOT,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        def sleepers():
            found = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"]
            return found if len(found) == 2 else None

        tree = _wait_for(sleepers, 30, "the process tree")
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends (the tree is in its own group)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else ():
            p.kill()
        proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# How each component shows in its command line (the api-server retitles itself "airflow api_server").
COMPONENTS = (("scheduler",), ("api-server", "api_server"), ("dag-processor",), ("triggerer",))


@pytest.mark.slow
@pytest.mark.heavy
def test_airflow_standalone_logs_in_with_the_settings_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_"))}
    env |= {"RECSYS_HOME": str(home), "RECSYS_AIRFLOW_USER": "admin", "RECSYS_AIRFLOW_PASSWORD": "stable-pw",
            "AIRFLOW__API__PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    out = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.airflow_env",
                             str(Path(sys.executable).with_name("airflow")), "standalone"],
                            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen: set[psutil.Process] = set()
    try:
        def components_up():
            seen.update(psutil.Process(proc.pid).children(recursive=True))
            cmdlines = " ".join(" ".join(p.cmdline()) for p in seen if p.is_running())
            log = (tmp_path / "standalone.log").read_text()
            # The login is printed again once the UI answers.
            return all(any(alias in cmdlines for alias in c) for c in COMPONENTS) and log.count("login: admin / stable-pw") >= 2

        _wait_for(components_up, 300, "Airflow's components and the UI")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", method="POST",
                                         data=json.dumps({"username": "admin", "password": "stable-pw"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["access_token"]

        seen.update(psutil.Process(proc.pid).children(recursive=True))
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        _, alive = psutil.wait_procs(list(seen), timeout=5)
        assert alive == [], f"left running: {[' '.join(p.cmdline()) for p in alive]}"
    finally:
        for p in seen:
            try:
                p.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
        out.close()
