"""User errors on the command line: one ``error: ...`` line on stderr and exit status 2, no traceback.

    from core.cli_errors import add_debug_flag, user_errors

    def main(argv=None) -> int:
        parser = argparse.ArgumentParser()
        add_debug_flag(parser)
        args = parser.parse_args(argv)
        with user_errors(debug=args.debug):
            ...  # a UserError raised in here ends the command with one line

What counts as a user error: :class:`core.errors.UserError` (and its subclasses), plus the
exception types a command names itself (``user_errors(FileNotFoundError)`` where that command
raises FileNotFoundError only for a missing input). Anything else is a bug and keeps its
traceback. ``--debug`` (or ``RECSYS_DEBUG=1`` in the environment) shows the traceback of user
errors too. Exit status 2 is what argparse uses for a bad command line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator

from core.errors import UserError
from core.settings import Settings

USER_ERROR_EXIT = 2
DEBUG_ENV = "RECSYS_DEBUG"


def debug_requested(debug: bool | None = None) -> bool:
    """``debug`` when given, otherwise the ``debug`` setting (``RECSYS_DEBUG``: 1/true/yes/on)."""
    if debug is not None:
        return debug
    try:
        return Settings.from_env().debug
    except UserError:  # a bad setting is itself the error being reported: no traceback
        return False


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=None,
        help=f"show the traceback of user errors too (or set {DEBUG_ENV}=1)",
    )


def error_line(exc: BaseException) -> str:
    """``error: <message>`` on one line (an OSError's ``[Errno 2]`` prefix dropped)."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return "error: " + " ".join(text.split())


@contextlib.contextmanager
def user_errors(*also: type[BaseException], debug: bool | None = None) -> Iterator[None]:
    """Turn a :class:`UserError` (or one of the types in ``also``) into one line + ``SystemExit(2)``.

    Usable as a ``with`` block or as a decorator (``@user_errors()``). With ``debug`` (or
    ``RECSYS_DEBUG=1``) the exception propagates with its traceback.
    """
    try:
        yield
    except (UserError, *also) as exc:
        if debug_requested(debug):
            raise
        print(error_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None
