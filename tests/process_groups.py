"""Stopping the servers a test started, each in its own process group (``start_new_session``)."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Sequence


def stop_process_groups(procs: Sequence[subprocess.Popen], timeout_s: float = 20.0) -> None:
    """SIGTERM every group, wait up to ``timeout_s`` for each leader, SIGKILL the groups that stay."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
