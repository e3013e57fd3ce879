"""What the browser tests share: the system Chromium driven by Playwright, screenshots kept as
test artifacts, pages cut off from the internet, and an embedded Airflow's components started
for a temporary home (its REST API with a token, its UI's login form).

Chromium is Debian's (``/usr/bin/chromium``, or ``$RECSYS_CHROMIUM``), never Playwright's own
download; without it, or without the ``playwright`` package, the tests skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.process_groups import stop_process_groups

from core.settings import REPO_ROOT

CHROMIUM = os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium")
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def require_browser() -> None:
    """Skip the calling test unless Chromium and Playwright are both here."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set RECSYS_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir() -> Path:
    return Path(os.environ.get("RECSYS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


def shot(page, name: str, tmp_path: Path | None = None) -> Path:
    """A full-page screenshot into the artifacts folder (and ``tmp_path`` when given)."""
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    page.screenshot(path=str(path), full_page=True)
    if tmp_path is not None:
        shutil.copy(path, tmp_path / name)
    return path


def is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about"):
        return True
    return parts.hostname in LOCAL_HOSTS


def block_the_internet(page) -> list[str]:
    """Abort every request that leaves this machine; the list of the URLs refused (filled as the
    page loads), so a test can say what its page tried to fetch."""
    refused: list[str] = []

    def route(r) -> None:
        if is_local(r.request.url):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return refused


def console_errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, filled as they happen."""
    errors: list[str] = []
    def console(msg) -> None:
        if msg.type == "error":
            errors.append(f"{msg.text} (at {msg.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


def login(page, base: str, user: str, password: str) -> None:
    """Log in through the simple auth manager's form."""
    page.goto(base + "/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


class AirflowApi:
    """REST API v2 with a JWT from the simple auth manager's /auth/token."""

    def __init__(self, base: str, user: str, password: str):
        self.base = base
        self.user, self.password = user, password
        self.token: str | None = None

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            if self.token is None:
                self.token = self._call("POST", "/auth/token", {"username": self.user, "password": self.password},
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


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


@contextlib.contextmanager
def airflow_components(env: dict[str, str], port: int, workdir: Path, components: tuple[str, ...],
                       ready_path: str, user: str, password: str,
                       timeout_s: float = 120) -> Iterator[AirflowApi]:
    """Start ``components`` (``api-server`` among them) with ``env``, each in its own session, its
    output in ``workdir/<name>.log``; yield the REST API once ``ready_path`` answers; stop them
    all (SIGTERM, then SIGKILL) on the way out."""
    procs, logs = [], []
    for name in components:
        args = ["api-server", "--port", str(port)] if name == "api-server" else [name]
        log = open(workdir / f"{name}.log", "w")
        logs.append(log)
        # Own session: the whole component (its workers, task processes) stops with it.
        procs.append(subprocess.Popen([airflow_bin(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    api = AirflowApi(f"http://127.0.0.1:{port}", user, password)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                api.get(ready_path)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    pytest.fail("Airflow did not come up:\n" + "\n".join(
                        (workdir / f"{n}.log").read_text()[-3000:] for n in components))
                time.sleep(2)
        yield api
    finally:
        stop_process_groups(procs, timeout_s=20)
        for log in logs:
            log.close()
