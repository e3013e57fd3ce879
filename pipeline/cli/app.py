"""The ``recsys`` Typer app: the root group, the global ``--debug`` flag and the helpers every
command module shares (dates, examples in the help, JSON output, reading a JSON file).

User errors (:class:`core.errors.UserError`, whichever floor raises it) end any command with one
``error: ... (fix: ...)`` line on stderr and exit status 2, through :func:`core.cli_errors.user_errors`
wrapped around the whole command tree by :class:`RecsysGroup`; ``--debug`` (or ``RECSYS_DEBUG=1``)
lets them propagate with their traceback. Typer's pretty exceptions are off: a bug prints Python's
plain traceback, a user error none.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Iterable

import typer
from typer.core import TyperGroup

from core.cli_errors import DEBUG_ENV, user_errors
from core.errors import UserError
from core.settings import Settings


class RecsysGroup(TyperGroup):
    """The root group: every subcommand runs inside :func:`user_errors` with the ``--debug`` given."""

    def invoke(self, ctx: typer.Context) -> Any:
        # ``--debug`` absent: None, so that RECSYS_DEBUG (the ``debug`` setting) decides.
        with user_errors(debug=ctx.params.get("debug") or None):
            return super().invoke(ctx)


app = typer.Typer(
    name="recsys",
    cls=RecsysGroup,
    help="The recommender platform's command line: every stage of the nightly loop and the "
         "operations around it. Settings come from RECSYS_* environment variables "
         "(RECSYS_HOME: where everything is written, default ./.recsys).",
    epilog="Example: recsys demo   (the whole loop on generated logs; then `recsys serve`)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option(
        "--debug", help=f"show the traceback of user errors too (or set {DEBUG_ENV}=1)")] = False,
) -> None:
    """The recommender platform's command line."""
    configure_logging()


def configure_logging() -> None:
    """The platform's own INFO lines on stderr (stdout keeps each command's JSON result); other
    libraries' from WARNING up. A handler already on the root logger (pytest's, Airflow's) is kept."""
    from core.logging_setup import PLATFORM_LOGGERS

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in PLATFORM_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    # py4j's goodbye lines at interpreter exit would land after the result.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def example(*commands: str) -> str:
    """A command's help epilog: its examples, one per line (``\\b`` keeps Click from re-wrapping)."""
    return "\b\nExample:\n" + "\n".join(f"  {command}" for command in commands)


def settings() -> Settings:
    """The settings of the environment (a bad RECSYS_* value is a user error naming it)."""
    return Settings.from_env()


def print_json(value: Any, *, indent: int | None = 2) -> None:
    print(json.dumps(value, indent=indent, default=str), flush=True)


def read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON document at ``path`` (``-``: stdin); a missing or unreadable file is a user error."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the {what} {path}: {exc.strerror or exc}", fix=fix) from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"the {what} {path} is not JSON ({exc})", fix=fix) from exc


def exit_with(code: int) -> None:
    """End the command with ``code`` (an old main's return value) unless it is 0."""
    if code:
        raise typer.Exit(code)


# Option types shared by the command modules.
DATE_METAVAR = "YYYY-MM-DD"
RunDate = Annotated[date, typer.Option("--date", parser=date.fromisoformat, metavar=DATE_METAVAR,
                                       help="the run's date (a UTC day)")]


def choice(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A Typer choice type: a str enum whose members are the values themselves (``str(m) == m``)."""
    return StrEnum(name, {value: value for value in values})


def plain(member: StrEnum | None) -> str | None:
    """A choice's value as a plain str (what the platform's functions take and pickle), or None."""
    return None if member is None else member.value


Protocol = choice("Protocol", ("auto", "user_temporal", "session"))
SeenRule = choice("SeenRule", ("auto", "true", "false"))
