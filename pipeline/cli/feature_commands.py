"""``recsys features ...``: load the Feast store (export, apply, materialize), query it (a user's
online features, Feast's own HTTP feature server), push an event, and the ``feast`` CLI's
environment. Feast is imported inside the commands (it takes seconds)."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer

from core.errors import UserError
from core.names import EVENT_TYPES
from core.settings import Settings
from features.store import PROJECT
from pipeline.cli.app import RunDate, app, choice, example, plain, print_json, settings

features = typer.Typer(
    help="The Feast feature store: load it for a date, read users' online features, serve them.",
    no_args_is_help=True,
    epilog=example("recsys features materialize --date 2026-11-20", "recsys features get --user u001"),
)
app.add_typer(features, name="features")

LOOPBACK = "127.0.0.1"
FEAST_SERVER_PORT = 6566  # Feast's own default (`feast serve`)
EventType = choice("EventType", EVENT_TYPES)


def utc_datetime(text: str) -> datetime:
    """An ISO 8601 date-time; naive means UTC (the data is in UTC)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def applied_store_settings() -> Settings:
    """The settings, once the feature repo has a registry to read (else a user error saying how)."""
    config = settings()
    registry = config.feast_dir / "registry.db"
    if not registry.is_file():
        raise UserError(f"no Feast registry at {registry}",
                        fix="load the store first: recsys features materialize --date YYYY-MM-DD")
    return config


@features.command(epilog=example(
    "recsys features materialize --date 2026-11-20",
    "recsys features materialize --date 2026-11-20 --start 2026-11-01T00:00 --end 2026-11-21T00:00",
))
def materialize(
    run_date: RunDate,
    start: Annotated[Optional[datetime], typer.Option(
        parser=utc_datetime, metavar="ISO-TIME",
        help="interval start (default: 90 days before --end; naive = UTC)")] = None,
    end: Annotated[Optional[datetime], typer.Option(
        parser=utc_datetime, metavar="ISO-TIME", help="interval end, exclusive (default: the end of --date)")] = None,
) -> None:
    """Export the warehouse's feature tables, register the Feast repo and load the online store
    with every feature row of [start, end) (the DAG's materialize_features task)."""
    from pipeline.stages import materialize_features

    if start is not None and end is not None and start >= end:
        raise typer.BadParameter(f"--start {start} is not before --end {end}", param_hint="--start")
    print_json(materialize_features(settings(), run_date, start, end))


@features.command(epilog=example("recsys features get --user u001", "recsys features get --user u001 --user u002"))
def get(
    user: Annotated[list[str], typer.Option("--user", metavar="USER_ID", help="a user id (repeatable)")],
) -> None:
    """Print users' online features (the recommendation_features service) as JSON; a user
    without any feature online maps to null."""
    from features.online_reader import read_user_features

    print_json(read_user_features(applied_store_settings(), user))


@features.command(epilog=example(
    "recsys features serve",
    "recsys features serve --port 6566   # then: curl -X POST http://127.0.0.1:6566/get-online-features "
    "-d '{\"feature_service\": \"recommendation_features\", \"entities\": {\"user_id\": [\"u001\"]}}'",
))
def serve(
    host: Annotated[str, typer.Option(help="address to bind (loopback by default: the server has no auth)")] = LOOPBACK,
    port: Annotated[int, typer.Option(min=1, max=65535)] = FEAST_SERVER_PORT,
    workers: Annotated[int, typer.Option(min=1, help="server worker processes")] = 1,
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request")] = False,
) -> None:
    """Run Feast's own HTTP feature server (FeatureStore.serve) on this platform's store: the
    registry and online store the settings name. Stops on Ctrl-C."""
    from serving.app import is_loopback

    from features.store import feature_store

    store = feature_store(applied_store_settings())
    if not is_loopback(host):
        print(f"warning: the feature server binds {host}, beyond this machine, without authentication",
              file=sys.stderr, flush=True)
    print(f"Feast feature server on http://{host}:{port} (POST /get-online-features)", file=sys.stderr, flush=True)
    store.serve(host=host, port=port, type_="http", no_access_log=not access_log, workers=workers)


@features.command(epilog=example("recsys features push --user u001 --item i042 --event-type click"))
def push(
    user: Annotated[str, typer.Option(help="user id")],
    item: Annotated[str, typer.Option(help="item id")],
    event_type: EventType = EventType("view"),
    event_time: Annotated[Optional[str], typer.Option(help="ISO 8601, UTC when naive; default now")] = None,
    project: Annotated[str, typer.Option(help="Feast project")] = PROJECT,
) -> None:
    """Append one event to a user's online recent-item list (the push path the API's POST /events takes)."""
    from features.push import push_user_events

    event = {"user_id": user, "item_id": item, "event_type": plain(event_type)}
    if event_time:
        event["event_time"] = event_time
    try:
        result = push_user_events(settings(), [event], project=project)
    except ValueError as exc:  # the event itself (an empty id, a bad time): nothing was pushed
        raise UserError(str(exc), fix="see `recsys features push --help`") from exc
    print(json.dumps(result, indent=2, sort_keys=True, default=str))


@features.command(epilog=example("eval \"$(recsys features env)\" && cd features && feast plan"))
def env() -> None:
    """Print the environment the `feast` CLI needs for this store, as shell exports."""
    from features.store import feast_cli_env

    for name, value in feast_cli_env(settings()).items():
        print(f"export {name}={shlex.quote(value)}")
