"""``recsys``: one command line for every stage and operation of the platform (Typer).

    recsys --help                      # every command; each command's --help ends with an example
    recsys demo                        # the whole nightly loop on generated logs
    recsys ingest --date 2026-11-20    # one stage for one date
    recsys features get --user u001    # what the online store holds for a user

The console script ``recsys`` (pyproject.toml) calls :func:`main`; ``python -m pipeline.cli``
does the same. The commands live in one module per group (data, features, models, services),
each a thin call into the functions the old ``python -m`` entry points call; those entry points
keep working. User errors end a command with one ``error: ... (fix: ...)`` line and exit status 2
(``--debug`` or ``RECSYS_DEBUG=1`` for the traceback): see :mod:`pipeline.cli.app`.
"""

from __future__ import annotations

import sys

from pipeline.cli import data_commands, feature_commands, model_commands, service_commands
from pipeline.cli.app import app

__all__ = ["app", "main", "data_commands", "feature_commands", "model_commands", "service_commands"]


def main(argv: list[str] | None = None) -> None:
    """The console script's entry point."""
    app(args=hoist_debug(sys.argv[1:] if argv is None else argv), prog_name="recsys")


def hoist_debug(args: list[str]) -> list[str]:
    """``--debug`` anywhere (``recsys ingest --date D --debug``, as the old entry points took it)
    moved to the front, where the root group reads it; a ``--`` ends the options looked at."""
    options = args[:args.index("--")] if "--" in args else args
    if "--debug" not in options:
        return args
    at = options.index("--debug")
    return ["--debug", *args[:at], *args[at + 1:]]
