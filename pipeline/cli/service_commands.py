"""``recsys`` commands that run something long-lived or look at a night: the recommendation API,
the nightly report, and the embedded Airflow (its UI, its database, a DAG run for a date).

The Airflow commands run in the embedded Airflow's environment exactly as
``python -m pipeline.airflow_env ...`` does (:func:`pipeline.airflow_env.main`: Airflow reads that
environment when it is imported; the UI runs supervised, stopped with everything it started).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import UserError
from pipeline.cli.app import Protocol, RunDate, SeenRule, app, example, exit_with, plain, print_json, settings

API_PORT = 8000


@app.command(epilog=example(
    "recsys serve   # http://127.0.0.1:8000/docs",
    "RECSYS_EVENTS_TOKEN=... RECSYS_ADMIN_TOKEN=... recsys serve --host 0.0.0.0",
))
def serve(
    host: Annotated[Optional[str], typer.Option(
        help="address to bind (default RECSYS_API_HOST, 127.0.0.1); a non-loopback one needs "
             "RECSYS_EVENTS_TOKEN and RECSYS_ADMIN_TOKEN")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = API_PORT,
) -> None:
    """Run the recommendation API (FastAPI, uvicorn), as `make api` does. The app checks the very
    host uvicorn binds: exposed beyond loopback, it refuses to start without both tokens."""
    import uvicorn

    from serving.app import create_app, refuse_exposed_without_tokens

    config = settings()
    if host is not None:
        config = config.replace(api_host=host)
    try:
        refuse_exposed_without_tokens(config)
    except RuntimeError as exc:
        raise UserError(str(exc)) from exc
    uvicorn.run(create_app(config), host=config.api_host, port=port)


@app.command(epilog=example("recsys report --date 2026-11-20"))
def report(run_date: RunDate) -> None:
    """Write the nightly HTML report of a run date ($RECSYS_HOME/reports/<date>/index.html) from
    what the night recorded; prints where it is."""
    from pipeline.report import write_report

    result = write_report(settings(), run_date)
    print_json(result)
    print(f"open {result['report_url']}", file=sys.stderr)


airflow = typer.Typer(
    help="The embedded Airflow (metadata on SQLite under $RECSYS_HOME/airflow, this machine only).",
    no_args_is_help=True,
    epilog=example("recsys airflow migrate && recsys airflow run --date 2026-11-20", "recsys airflow ui"),
)
app.add_typer(airflow, name="airflow")


def _in_airflow_env(*command: str) -> None:
    """Run ``command`` in the embedded Airflow's environment; its exit status is this command's."""
    from pipeline.airflow_env import main as run_in_airflow_env

    exit_with(run_in_airflow_env(list(command)) or 0)


def _airflow_executable() -> str:
    return str(Path(sys.executable).with_name("airflow"))


@airflow.command(epilog=example("recsys airflow ui   # http://127.0.0.1:8080"))
def ui() -> None:
    """Airflow's UI and scheduler (`airflow standalone`) on http://127.0.0.1:8080, on the same
    metadata as the demo and `recsys airflow run` (what `make airflow-ui` runs). Prints the login
    (RECSYS_AIRFLOW_USER / RECSYS_AIRFLOW_PASSWORD); Ctrl-C stops it with everything it started."""
    _in_airflow_env(_airflow_executable(), "standalone")


@airflow.command(epilog=example("recsys airflow migrate"))
def migrate() -> None:
    """Create or upgrade the embedded Airflow's metadata database (`airflow db migrate`)."""
    _in_airflow_env(_airflow_executable(), "db", "migrate")


@airflow.command(epilog=example(
    "recsys airflow run --date 2026-11-20",
    "recsys airflow run --date 2026-11-20 --model sasrec --epochs 20 --protocol session",
    "recsys airflow run --date 2026-11-21 --readmit 'duplicates were a client retry; checked'",
))
def run(
    ctx: typer.Context,
    run_date: RunDate,
    model: Annotated[str, typer.Option(help="auto (the schedule's default) or a model name")] = "auto",
    epochs: int = 20,
    protocol: Annotated[Optional[Protocol], typer.Option(
        help="evaluation protocol (default: RECSYS_EVAL_PROTOCOL)")] = None,
    test_days: Annotated[Optional[float], typer.Option(
        help="test window in days (default: from the settings/log)")] = None,
    val_days: Annotated[Optional[float], typer.Option(help="validation window in days")] = None,
    exclude_seen: Annotated[Optional[SeenRule], typer.Option(help="seen-item rule")] = None,
    readmit: Annotated[Optional[str], typer.Option(
        metavar="REASON", help="re-admit the date, rejected by an earlier quality gate, for this reason "
                               "(the DAG's readmit Param; recorded)")] = None,
    log: Annotated[Optional[Path], typer.Option(
        help="also write the run's output here (default: $RECSYS_HOME/logs/run_dag/...)")] = None,
) -> None:
    """Run the nightly DAG once for a date through Airflow's own dag.test() (what
    `python -m pipeline.run_dag` does; run `recsys airflow migrate` once first).

    Exit 0 when the run succeeded, 1 when it failed (the failed tasks, their alerts and the log
    are printed), 2 for a user error. The last line of stdout is `DAG_RUN_RESULT {json}`.
    """
    args = ["--date", run_date.isoformat(), "--model", model, "--epochs", str(epochs)]
    for flag, value in (("--protocol", plain(protocol)), ("--test-days", test_days), ("--val-days", val_days),
                        ("--exclude-seen", plain(exclude_seen)), ("--readmit", readmit), ("--log", log)):
        if value is not None:
            args += [flag, str(value)]
    if ctx.find_root().params.get("debug"):
        args.append("--debug")
    _in_airflow_env(sys.executable, "-m", "pipeline.run_dag", *args)
