"""Environment for an embedded Airflow: metadata on SQLite under ``$RECSYS_HOME/airflow``.

Airflow reads its configuration when it is first imported, so these variables go into the
environment of the process that runs Airflow (the demo's subprocesses, the tests' fixture),
never set by importing this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.settings import REPO_ROOT, Settings


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
    # Airflow's api-server (the UI of `airflow standalone`) binds 0.0.0.0 by default: the
    # embedded one stays on this machine unless AIRFLOW__API__HOST says otherwise.
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    return env


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.airflow_env airflow standalone``: run a command with this environment."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m pipeline.airflow_env COMMAND [ARGS...]")
    settings = Settings.from_env()
    (settings.home / "airflow").mkdir(parents=True, exist_ok=True)
    os.execvpe(args[0], args, airflow_env(settings))


if __name__ == "__main__":
    main()
