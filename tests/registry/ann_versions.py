"""Registered versions of synthetic large-catalog checkpoints, promoted through the real step.

Training on thousands of items does not fit a test; retrieval needs only a checkpoint shaped
like a trained one (:mod:`benchmarks.synthetic_catalog`), registered as a night registers one and
promoted by :func:`registry.promotion.apply_decision` (which builds the index) on a decision
whose one check says plainly that a test fixture passed it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from benchmarks.synthetic_catalog import promote as promote_with_check
from benchmarks.synthetic_catalog import register_checkpoint  # noqa: F401 - re-exported for the tests
from core.settings import Settings

TEST_CHECK = "promoted_by_test_fixture"


def promote(settings: Settings, version: str) -> dict:
    """Promote ``version`` through ``apply_decision``; returns its decision file's content."""
    return promote_with_check(settings, version, TEST_CHECK)


def artifact_folder(settings: Settings, version: str) -> Path:
    """The version's folder in the artifact store (not a downloaded copy)."""
    from training.tracking import mlflow_client

    uri = mlflow_client(settings).get_model_version_download_uri(settings.registered_model_name, version)
    return Path(urlparse(uri).path)


def index_meta(folder: Path) -> dict:
    from registry.ann_index import META_FILE

    return json.loads((folder / META_FILE).read_text())["meta"]
