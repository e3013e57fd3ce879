"""``core.cli_errors.user_errors``: a user error is one ``error:`` line and exit status 2; a bug
keeps its traceback; ``--debug`` / ``RECSYS_DEBUG=1`` shows the traceback of user errors too."""

from __future__ import annotations

import pytest

from core.cli_errors import user_errors
from core.errors import UserError


def _stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_user_errors_become_one_line_and_exit_2(capsys, monkeypatch) -> None:
    monkeypatch.delenv("RECSYS_DEBUG", raising=False)

    @user_errors()
    def command() -> None:
        raise UserError("no events before 2026-11-20 in the warehouse\n(second line)", fix="ingest the days first")

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == 2
    assert _stderr_lines(capsys) == [
        "error: no events before 2026-11-20 in the warehouse (second line) (fix: ingest the days first)"]

    # A type a command names as a user error of its own; an OSError loses its "[Errno 2]".
    with pytest.raises(SystemExit) as exited, user_errors(FileNotFoundError):
        raise FileNotFoundError(2, "No such file or directory", "/data/Beauty.txt")
    assert exited.value.code == 2
    assert _stderr_lines(capsys) == ["error: No such file or directory: /data/Beauty.txt"]


def test_bugs_and_debug_keep_the_traceback(capsys, monkeypatch) -> None:
    monkeypatch.delenv("RECSYS_DEBUG", raising=False)
    with pytest.raises(ValueError), user_errors():  # not named: a bug
        raise ValueError("boom")
    with pytest.raises(UserError), user_errors(debug=True):
        raise UserError("missing input")
    monkeypatch.setenv("RECSYS_DEBUG", "1")
    with pytest.raises(UserError), user_errors():
        raise UserError("missing input")
    assert _stderr_lines(capsys) == []
