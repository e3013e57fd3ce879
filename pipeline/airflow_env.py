"""Environment for an embedded Airflow: metadata on SQLite under ``$RECSYS_HOME/airflow``.

Airflow reads its configuration when it is first imported, so these variables go into the
environment of the process that runs Airflow (the demo's subprocesses, the tests' fixture),
never set by importing this module.

``python -m pipeline.airflow_env airflow standalone`` (``make airflow-ui``) also writes the UI's
login from the settings (``RECSYS_AIRFLOW_USER`` / ``RECSYS_AIRFLOW_PASSWORD``, the simple auth
manager's passwords file) and prints it every time, and runs a long-lived Airflow command in its
own process group: Ctrl-C (or SIGTERM) stops it with every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.settings import REPO_ROOT, Settings

# Airflow commands that run until stopped: these run supervised (see run_supervised); any other
# command replaces this process, keeping the terminal (a prompt of `airflow db reset` reads it).
SERVICES = ("standalone", "api-server", "scheduler", "dag-processor", "triggerer")
# How long the command has to stop after the forwarded signal, then after SIGTERM.
STOP_GRACE_S = 30.0
TERM_GRACE_S = 10.0


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    home = settings.home / "airflow"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The default of 32 starts 32 worker processes; these machines have 2 cores.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "RECSYS_HOME": str(settings.home),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
            # `airflow standalone` starts its components as `airflow ...` from PATH: use this
            # environment's executables even when the virtualenv is not activated.
            "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p),
        }
    )
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    # The UI's login comes from the settings (see write_login), never generated and shown once.
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{settings.airflow_user}:admin"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords_path(settings))
    # Airflow's api-server (the UI of `airflow standalone`) binds 0.0.0.0 by default: the
    # embedded one stays on this machine unless AIRFLOW__API__HOST says otherwise.
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    return env


def passwords_path(settings: Settings) -> Path:
    return settings.home / "airflow" / "simple_auth_manager_passwords.json"


def write_login(settings: Settings) -> Path:
    """Write the simple auth manager's passwords file from the settings (owner-only); its path."""
    path = passwords_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({settings.airflow_user: settings.airflow_password}, out)
    os.chmod(path, 0o600)  # a file left by an earlier Airflow keeps its mode on O_TRUNC
    return path


def login_lines(settings: Settings, env: dict[str, str]) -> list[str]:
    host, port = env.get("AIRFLOW__API__HOST", "127.0.0.1"), env.get("AIRFLOW__API__PORT", "8080")
    return [f"Airflow UI: http://{host}:{port}",
            f"  login: {settings.airflow_user} / {settings.airflow_password}  "
            "(RECSYS_AIRFLOW_USER / RECSYS_AIRFLOW_PASSWORD; "
            f"written to {env['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']})"]


def _descendants(pid: int) -> set:
    import psutil

    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return set()


def _listening(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def run_supervised(args: list[str], env: dict[str, str], ready_lines: list[str] = ()) -> int:
    """Run ``args`` in its own process group until it exits; SIGINT/SIGTERM/SIGHUP go to the whole
    group, and whatever it started is stopped before this returns (SIGTERM, then SIGKILL).
    ``ready_lines`` are printed once the api-server answers (AIRFLOW__API__HOST/PORT).

    ``airflow standalone`` stops only its direct children; their own workers (the scheduler's
    executor, the api-server's) would outlive it. Descendants are remembered while they run, so
    one that left the group (or was orphaned) is stopped too. Returns the command's exit status.
    """
    import psutil

    proc = subprocess.Popen(args, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        # A second Ctrl-C means now.
        _signal_group(proc.pid, signal.SIGKILL if len(received) > 1 else signum)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in handled}
    known: set = set()
    host, port = env.get("AIRFLOW__API__HOST", "127.0.0.1"), int(env.get("AIRFLOW__API__PORT", "8080"))
    try:
        while proc.poll() is None:
            known |= _descendants(proc.pid)
            if received:
                break
            if ready_lines and _listening("127.0.0.1" if host in ("0.0.0.0", "") else host, port):
                # Again once the UI answers: the lines printed at start are far above by then.
                print("\n".join(ready_lines), flush=True)
                ready_lines = ()
            time.sleep(0.5)
        for grace, escalate in ((STOP_GRACE_S, signal.SIGTERM), (TERM_GRACE_S, signal.SIGKILL)):
            deadline = time.monotonic() + grace
            while proc.poll() is None and time.monotonic() < deadline:
                known |= _descendants(proc.pid)
                time.sleep(0.2)
            if proc.poll() is None:
                _signal_group(proc.pid, escalate)
        proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _signal_group(proc.pid, signal.SIGTERM)  # members left in the group after its leader exited
        leftovers = [p for p in known | _descendants(proc.pid) if p.is_running()]
        for p in leftovers:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=TERM_GRACE_S)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.airflow_env airflow standalone``: run a command with this environment.

    Never returns, as the command replaces this process or this process exits with its status.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m pipeline.airflow_env COMMAND [ARGS...]")
    settings = Settings.from_env()
    (settings.home / "airflow").mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings)
    write_login(settings)
    if not any(arg in SERVICES for arg in args[1:]):
        os.execvpe(args[0], args, env)
    login = login_lines(settings, env)
    print("\n".join(login), flush=True)
    raise SystemExit(run_supervised(args, env, ready_lines=login if {"standalone", "api-server"} & set(args) else []))


if __name__ == "__main__":
    main()
