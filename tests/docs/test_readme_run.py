"""The README's ``readme-check: run`` blocks, run as written in a fresh RECSYS_HOME.

Each block runs in one bash process from the repository root (where ``.venv/bin/...`` resolves),
``set -euo pipefail``: any command that fails fails the test, with the output shown.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from core.settings import REPO_ROOT
from tests.docs.readme_blocks import bash_blocks

pytestmark = pytest.mark.slow

RUN_BLOCKS = [b for b in bash_blocks() if b.kind == "run"]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"line{b.line}")
def test_run_blocks_run_as_written(block, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "MLFLOW_"))}
    env |= {"RECSYS_HOME": str(tmp_path / "home"), "RECSYS_SPARK_DRIVER_MEMORY": "1g"}
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block.text], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (f"README.md:{block.line} failed (exit {done.returncode})\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
