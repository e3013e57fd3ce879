"""Each app's metrics are its own, whatever Feast did to prometheus_client before.

Feast's metrics module, imported lazily by materialize and online reads, switches
prometheus_client to file-backed multiprocess values when it comes first; the counters of two
apps in one process then shared one value. A fresh interpreter imports Feast's module first, as
a test run or a benchmark that materialized before starting the API does."""

from __future__ import annotations

import subprocess
import sys

from core.settings import REPO_ROOT

SCRIPT = """
import feast.metrics  # first, as after a materialize in the same process
from serving.metrics import ServingMetrics
first = ServingMetrics()
first.reloads.labels(outcome="refused").inc()
first.reloads.labels(outcome="refused").inc()
second = ServingMetrics()  # a later app in the same process: it starts from zero
print(second.reloads.labels(outcome="refused")._value.get(), first.reloads.labels(outcome="refused")._value.get())
"""


def test_two_apps_after_feast_metrics_count_apart():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["0.0", "2.0"], done.stdout
