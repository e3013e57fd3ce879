"""Errors the user fixes, told apart from bugs.

A :class:`UserError` is raised for a condition the person running a command can fix (a missing
raw folder, an empty warehouse, an unknown model name, a date outside the data): the command
line tools print it as one line (``error: ...``) with exit status 2 instead of a traceback (see
:mod:`core.cli_errors`). Inside Airflow it fails the task like any other exception.

This module imports nothing heavy (no torch, Spark or Airflow), so any layer can raise it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the input or the command, not with the code: one line says what and how to fix it.

    ``UserError("no events before 2026-11-20 in the warehouse", fix="ingest and build the sessions first")``
    reads ``no events before 2026-11-20 in the warehouse (fix: ingest and build the sessions first)``.
    Subclasses may also derive from a built-in type (``class X(UserError, FileNotFoundError)``) so
    that existing ``except FileNotFoundError`` clauses keep catching them.
    """

    def __init__(self, message: str, *args: object, fix: str | None = None) -> None:
        super().__init__(message, *args)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        text = " ".join(str(self.message).split())  # one line, whatever the message held
        return f"{text} (fix: {self.fix})" if self.fix else text
