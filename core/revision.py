"""Which code a model or a benchmark figure came from: the checkout's commit, ``+dirty`` when
tracked files differ from it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from core.settings import REPO_ROOT


def git_revision(override: str = "", *, root: Path = REPO_ROOT, ignore: Sequence[Path] = ()) -> str | None:
    """The commit of ``root`` (12 hex digits), ``+dirty`` when a tracked file other than those
    under ``ignore`` differs from it; None outside a git checkout.

    ``override`` (``Settings.code_revision``, ``RECSYS_CODE_REVISION``) wins: a copy of the tree
    shipped to another machine has no ``.git`` of the commit it holds.
    """
    if override:
        return override
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return None
        excluded = [f":(exclude){Path(path).relative_to(root)}" for path in ignore]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
                               cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")
