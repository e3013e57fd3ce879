"""The README's shell blocks and how each is checked, for tests/docs/test_readme.py.

Every fenced ``bash`` block of README.md is preceded by a directive comment that says how a test
exercises it::

    <!-- readme-check: help -->                        each command resolves: its subcommand and
                                                      options exist (``recsys ... --help``), its
                                                      module imports, its make target exists
    <!-- readme-check: run -->                         the block runs, as written, in a fresh
                                                      RECSYS_HOME (tests/docs/test_readme_run.py)
    <!-- readme-check: by tests/x.py::test_y ... -->  the named tests run what the block shows, and
                                                      each command resolves as for help

A block without a directive fails the suite, so a command cannot be added unchecked.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from core.settings import REPO_ROOT

README = REPO_ROOT / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme-check:\s*(help|run|by)\b(.*?)-->")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    kind: str | None  # help | run | by | None (no directive)
    arguments: tuple[str, ...]
    text: str

    @property
    def commands(self) -> list[str]:
        """The block's command lines: comments dropped, continuation lines joined."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        lines = []
        for raw in joined.splitlines():
            line = _strip_comment(raw).strip()
            if line:
                lines.append(line)
        return lines


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def bash_blocks(path: Path = README) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start = i
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            match = DIRECTIVE.search(previous)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            kind = match.group(1) if match else None
            arguments = tuple(match.group(2).split()) if match else ()
            blocks.append(Block(start + 1, kind, arguments, "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return blocks


def words(command: str) -> list[str]:
    """The command's words without leading ``VAR=value`` assignments."""
    parts = shlex.split(command)
    while parts and ENV_ASSIGNMENT.match(parts[0]):
        parts.pop(0)
    return parts
