"""Who may push events: ``POST /events`` needs ``RECSYS_EVENTS_TOKEN``'s bearer token when one
is set, and an API bound to a non-loopback address refuses to start with either write route
(``/events``, ``/admin/reload``) left open. ``make api`` binds the host the app checks."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from fastapi.testclient import TestClient

from core.settings import REPO_ROOT, Settings
from serving.app import create_app
from tests.reliability.events_host import events_app, materialized


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return materialized(tmp_path_factory.mktemp("events-auth") / "home")


def test_events_need_the_bearer_token_when_one_is_set(settings):
    event = {"events": [{"user_id": "u1", "item_id": "i9"}]}
    with TestClient(events_app(settings)) as client:
        assert client.post("/events", json=event).status_code == 200  # no token: open on loopback

    with TestClient(events_app(settings.replace(events_token="ev3nts"))) as client:
        missing = client.post("/events", json=event)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/events", json=event, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        # checked before the body: a caller without the token learns nothing of its rules
        assert client.post("/events", json={"events": "?"}).status_code == 401
        ok = client.post("/events", json=event, headers={"Authorization": "Bearer ev3nts"})
        assert ok.status_code == 200 and ok.json()["recent_item_ids"] == {"u1": ["i3", "i9", "i9"]}


@pytest.mark.parametrize(("host", "events_token", "admin_token", "missing"), [
    ("0.0.0.0", "", "adm", "RECSYS_EVENTS_TOKEN is empty"),
    ("192.168.1.7", "ev", "", "RECSYS_ADMIN_TOKEN is empty"),
    ("::", "", "", "RECSYS_EVENTS_TOKEN and RECSYS_ADMIN_TOKEN are empty"),
])
def test_exposed_bind_without_both_tokens_refuses_to_start(tmp_path, host, events_token, admin_token, missing):
    settings = Settings(home=tmp_path / "home", api_host=host, events_token=events_token,
                        admin_token=admin_token, champion_poll_seconds=0)
    with pytest.raises(RuntimeError) as refused:
        with TestClient(create_app(settings)):
            pass
    message = str(refused.value)
    assert "\n" not in message and f"RECSYS_API_HOST={host!r}" in message and missing in message

    from serving.app import is_loopback, refuse_exposed_without_tokens

    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(loopback)
        refuse_exposed_without_tokens(settings.replace(api_host=loopback))  # allowed
    refuse_exposed_without_tokens(settings.replace(events_token="e", admin_token="a"))


def _make_api_command(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "RECSYS_API_HOST"}
    done = subprocess.run(["make", "-n", "api"], cwd=REPO_ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "uvicorn" in line]
    return shlex.split(line)


def test_make_api_binds_the_host_the_app_checks():
    for env, host in (({}, "127.0.0.1"), ({"RECSYS_API_HOST": "0.0.0.0"}, "0.0.0.0")):
        words = _make_api_command(**env)
        assert f"RECSYS_API_HOST={host}" in words  # what Settings.from_env reads in the app
        assert words[words.index("--host") + 1] == host  # what uvicorn binds
