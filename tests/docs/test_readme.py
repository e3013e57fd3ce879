"""Every shell command the README shows is exercised by a test, so the README cannot rot.

``readme-check: help`` and ``by`` blocks are checked here, command by command: a ``recsys`` command is run
with ``--help`` appended (Click parses every subcommand and option first, so a renamed command or
option fails), a ``python -m`` module and a ``uvicorn`` app must import, a ``make`` target must
exist, a ``curl`` path must be a route of the API. ``run`` blocks run as written in
tests/docs/test_readme_run.py; ``by`` blocks name the tests that run them, which must exist.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from core.settings import REPO_ROOT
from tests.docs.readme_blocks import bash_blocks, words

BIN = Path(sys.executable).parent
BLOCKS = bash_blocks()


def _make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*):", text, flags=re.M))


def _api_routes() -> list[re.Pattern]:
    from serving.app import create_app
    from core.settings import Settings

    app = create_app(Settings(home=REPO_ROOT / ".recsys-readme-check", champion_poll_seconds=0))
    return [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", route.path) + "$")
            for route in app.routes if hasattr(route, "path")]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _problem(command: str, targets: set[str], routes) -> str | None:
    """Why ``command`` does not resolve, or None."""
    parts = words(command.split("|")[0].rstrip().removesuffix("&"))
    if not parts:
        return None
    program = Path(parts[0]).name
    if program == "eval":
        inner = re.fullmatch(r"\$\((.*)\)", parts[1].strip(), flags=re.S)
        return _problem(inner.group(1), targets, routes) if inner else f"cannot read {command!r}"
    if program == "make":
        missing = [t for t in parts[1:] if "=" not in t and not t.startswith("-") and t not in targets]
        return f"no make target {missing}" if missing else None
    if program == "curl":
        url = next(p for p in parts[1:] if p.startswith("http"))
        path = urlparse(url).path
        return None if any(r.match(path) for r in routes) else f"the API has no route for {path}"
    if program in ("python", "python3") and parts[1:2] == ["-m"] or program == "torchrun":
        module = parts[parts.index("-m") + 1]
        return None if _module_exists(module) else f"no module {module}"
    if program == "uvicorn":
        module, _, attribute = parts[1].partition(":")
        return None if hasattr(importlib.import_module(module), attribute) else f"no app {parts[1]}"
    if program in ("recsys", "feast", "mlflow"):
        executable = BIN / program
        done = subprocess.run([str(executable), *parts[1:], "--help"], capture_output=True, text=True,
                              timeout=300, cwd=REPO_ROOT)
        return None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    return f"no rule checks {program!r}: add one to tests/docs/test_readme.py"



def test_every_shell_block_says_how_it_is_checked():
    unchecked = [f"README.md:{b.line}" for b in BLOCKS if b.kind is None]
    assert not unchecked, f"bash blocks without a readme-check directive: {unchecked}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind in ("help", "by")], ids=lambda b: f"line{b.line}")
def test_commands_resolve(block):
    targets, routes = _make_targets(), _api_routes()
    problems = {c: p for c in block.commands if (p := _problem(c, targets, routes))}
    assert not problems, problems


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "by"], ids=lambda b: f"line{b.line}")
def test_blocks_name_tests_that_exist(block):
    assert block.arguments, f"README.md:{block.line}: `by` names no test"
    for node in block.arguments:
        path, _, name = node.partition("::")
        file = REPO_ROOT / path
        assert file.is_file(), f"README.md:{block.line}: no test file {path}"
        defined = {n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"README.md:{block.line}: {path} has no test {name}"


def test_the_check_catches_a_rotten_command():
    targets, routes = _make_targets(), _api_routes()
    assert _problem(".venv/bin/recsys ingest --date 2026-11-01 --to 2026-11-04", targets, routes) is None
    for rotten in (".venv/bin/recsys ingest --day 2026-11-01",   # a renamed option
                   ".venv/bin/recsys sessionize --date 2026-11-01",  # a renamed command
                   ".venv/bin/python -m ingest.ingest_days --date 2026-11-01",
                   "make demos", "curl http://127.0.0.1:8000/recommendation/u1"):
        assert _problem(rotten, targets, routes), rotten
